"""A causal simulator of multimodal recommendation data with planted confounding and bias.

The generative story (docs/SIMULATOR.md has the diagram and every equation):

* Every item has a hidden confounder: a coarse category and, inside it, a fine style. The
  style's embedding drives *every* modality's features and also users' preferences, so the
  features -> preference association is partly spurious (back-door path through Z).
* Users pick a style by taste (times how much the platform exposes it), are shown a slate of
  that style's items drawn by popularity, and choose the slate item whose item-specific
  content they like best. Observed data thus over-represent popular and promoted items.
* A fraction of training edges are accidental clicks on uniformly random items (``is_noise``).
* ``UNBIASED_TEST`` replays the same choice model under uniform exposure: what a deconfounded,
  debiased model should rank well.

Generation is vectorised numpy over blocks of ``USER_BLOCK`` users, each block with its own
random stream, so memory is bounded by one block and the output does not depend on how the
blocks are consumed. ``simulate`` returns everything in memory (tests, small data);
``generate`` streams blocks into a ``DatasetWriter``.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from data_loaders.format import DatasetError, Manifest, Split
from data_loaders.writer import DatasetWriter

USER_BLOCK = 1024
"""Users per block. Part of the definition of the random streams: changing it changes the data."""
ITEM_BLOCK = 65536
"""Items per feature block (also part of the random-stream definition)."""
_OVERSAMPLE = 2.0
"""Candidate draws per wanted edge; repeats of an item for the same user are dropped."""
_DRAW_BATCH = 8192
"""Choices scored per slice: keeps temporaries cache-sized (also part of the random streams)."""
_TINY = np.finfo(np.float32).tiny


def _param(default: Any, help: str) -> Any:
    """A dataclass field carrying its documentation (reused as CLI help)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class SimulatorParams:
    """Every knob of the simulator; defaults give a ~2,000 x 1,000 demo dataset."""

    seed: int = _param(0, "Random seed; the same parameters and seed give identical data.")
    num_users: int = _param(2000, "Number of users (ids 0..num_users-1).")
    num_items: int = _param(1000, "Number of items (ids 0..num_items-1).")
    num_categories: int = _param(8, "K1: coarse confounder values (category / brand).")
    styles_per_category: int = _param(
        4, "K2: fine styles inside each category (1 = no hierarchy); Z_fine has K1*K2 values.")
    confounder_dim: int = _param(16, "Dimension of the confounder embedding emb(Z).")
    content_dim: int = _param(16, "Dimension of the item-specific content vector c_i.")
    modalities: str = _param(
        "image:64,text:48", "Modalities as 'name:dim,...'; each gets its own mixing matrix A_m.")
    category_scale: float = _param(
        2.0, "Std of the coarse-category embeddings (how visible Z is in the features).")
    style_scale: float = _param(1.0, "Std of the fine-style offsets added to the category embedding.")
    feature_noise: float = _param(0.5, "Std of the isotropic noise added to each modality's features.")
    coarse_concentration: float = _param(
        0.2, "Dirichlet alpha of user taste over categories (small = few favourite categories).")
    fine_concentration: float = _param(
        0.5, "Dirichlet alpha of user taste over styles inside a category.")
    confounder_weight: float = _param(
        1.0, "w_z: exponent on style taste (0 = Z does not drive preference: no spurious path).")
    content_weight: float = _param(
        2.0, "w_c: weight of the content match <v_u, c_i> in the slate choice (0 = Z alone decides).")
    slate_size: int = _param(20, "Items shown per choice; the user takes the best-liked one.")
    popularity_exponent: float = _param(
        1.0, "a: item propensity p_i = rank_i^-a (Zipf); 0 = no popularity bias in exposure.")
    promoted_fraction: float = _param(0.25, "Fraction of categories the platform promotes.")
    promotion_boost: float = _param(
        3.0, "Exposure multiplier of promoted categories (1 = no promotion).")
    interactions_per_user: float = _param(
        14.0, "Mean target of genuine observed interactions per user (lognormal).")
    interactions_sigma: float = _param(0.7, "Lognormal sigma of the per-user interaction count.")
    min_interactions: int = _param(2, "Lower clip of the per-user target count (>= 1).")
    max_interactions: int = _param(300, "Upper clip of the per-user target count.")
    noise_rate: float = _param(
        0.1, "Expected fraction of a user's train edges that are accidental clicks on random items.")
    valid_fraction: float = _param(0.1, "Fraction of a user's genuine interactions held out for valid.")
    test_fraction: float = _param(0.1, "Fraction of a user's genuine interactions held out for test.")
    min_interactions_to_split: int = _param(
        3, "Users with fewer genuine interactions keep them all in train.")
    unbiased_per_user: int = _param(
        5, "Items per user drawn from the true preference under uniform exposure (UNBIASED_TEST).")
    unbiased_valid_per_user: int = _param(
        0, "Items per user drawn like UNBIASED_TEST but apart from it (UNBIASED_VALID): a split to choose "
           "epochs and settings under uniform exposure (eval.select_split) without touching UNBIASED_TEST.")

    def __post_init__(self) -> None:
        def need(ok: bool, what: str) -> None:
            if not ok:
                raise ValueError(f"SimulatorParams: {what}")

        need(self.num_users >= 1, "num_users must be >= 1")
        need(self.num_users * self.num_items < 2**62, "num_users * num_items too large for int64 keys")
        need(self.num_categories >= 1 and self.styles_per_category >= 1, "K1, K2 must be >= 1")
        need(self.num_items >= self.num_styles, "num_items must be >= K1 * K2 (one item per style)")
        need(min(self.category_scale, self.style_scale, self.feature_noise, self.confounder_weight,
                 self.content_weight, self.popularity_exponent, self.interactions_sigma) >= 0,
             "scales, weights, exponents and sigmas must be >= 0")
        need(self.interactions_per_user > 0, "interactions_per_user must be > 0")
        need(self.confounder_dim >= 1 and self.content_dim >= 1, "embedding dims must be >= 1")
        need(len(self.modality_dims) >= 1, "at least one modality")
        need(min(self.coarse_concentration, self.fine_concentration) > 0, "concentrations must be > 0")
        need(self.slate_size >= 1, "slate_size must be >= 1")
        need(self.promotion_boost > 0 and 0 <= self.promoted_fraction <= 1, "bad promotion settings")
        need(1 <= self.min_interactions <= self.max_interactions,
             "need 1 <= min_interactions <= max_interactions")
        need(0 <= self.noise_rate < 1, "noise_rate must be in [0, 1)")
        need(self.valid_fraction >= 0 and self.test_fraction >= 0
             and self.valid_fraction + self.test_fraction < 1, "held-out fractions must sum below 1")
        need(self.min_interactions_to_split >= 1, "min_interactions_to_split must be >= 1")
        need(self.unbiased_per_user >= 0, "unbiased_per_user must be >= 0")
        need(self.unbiased_valid_per_user >= 0, "unbiased_valid_per_user must be >= 0")

    @property
    def num_styles(self) -> int:
        """Number of fine confounder values K1 * K2."""
        return self.num_categories * self.styles_per_category

    @property
    def modality_dims(self) -> dict[str, int]:
        """``modalities`` parsed into {name: dim}."""
        out: dict[str, int] = {}
        for part in filter(None, (p.strip() for p in self.modalities.split(","))):
            name, _, dim = part.partition(":")
            if not name or not dim.isdigit() or int(dim) < 1 or name in out:
                raise ValueError(f"SimulatorParams: bad modality spec {part!r} (want 'name:dim')")
            out[name] = int(dim)
        return out


@dataclass
class World:
    """Item-side latent variables, shared by every user block."""

    style: np.ndarray          # int32 [I] fine confounder Z_i (global style id)
    popularity: np.ndarray     # float64 [I] propensity p_i in (0, 1]
    promoted: np.ndarray       # bool [K1] promoted categories
    content: np.ndarray        # float32 [I, content_dim] item-specific content c_i
    style_emb: np.ndarray      # float32 [K1*K2, confounder_dim] emb(Z)
    mixing: dict[str, np.ndarray]  # modality -> float32 [dim, confounder_dim + content_dim] A_m
    order: np.ndarray          # int64 [I] item ids sorted by style (style-contiguous layout)
    style_start: np.ndarray    # int64 [S + 1] offsets of each style in ``order``
    pop_cum: np.ndarray        # float64 [I + 1] cumulative popularity along ``order``, from 0
    exposure_mass: np.ndarray  # float64 [S] sum_{i in s} p_i * boost(category(s))


@dataclass
class SimulatedData:
    """A whole simulated dataset in memory (see ``simulate``)."""

    params: SimulatorParams
    user_id: np.ndarray    # int64 [N]
    item_id: np.ndarray    # int64 [N]
    split: np.ndarray      # int8 [N] a Split value
    is_noise: np.ndarray   # bool [N] accidental click (only ever in TRAIN)
    truth: pa.Table        # truth/items.parquet
    features: dict[str, np.ndarray]  # modality -> float32 [I, dim], row i = item i


def _rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent random stream per (seed, purpose, block) so blocks are reproducible alone."""
    return np.random.default_rng(np.random.SeedSequence([seed, *stream]))


def build_world(p: SimulatorParams) -> World:
    """Draw the item-side latents: confounders, propensities, content, modality mixers."""
    rng = _rng(p.seed, 0)
    S, I = p.num_styles, p.num_items
    # Unequal style sizes (real categories are), but every style gets at least one item.
    sizes = rng.dirichlet(np.full(S, 2.0))
    style = np.concatenate([np.arange(S), rng.choice(S, size=I - S, p=sizes)])
    style = rng.permutation(style).astype(np.int32)
    # Zipf propensity on a random ranking: independent of Z, so popularity is a separate bias.
    popularity = (rng.permutation(I) + 1.0) ** -p.popularity_exponent
    promoted = np.zeros(p.num_categories, dtype=bool)
    promoted[rng.permutation(p.num_categories)[: round(p.promoted_fraction * p.num_categories)]] = True
    # Hierarchy: a style's embedding is its category's plus a smaller style offset, so the
    # coarse level explains most of the feature variance and the fine level the rest.
    cat_emb = rng.normal(0.0, p.category_scale, (p.num_categories, p.confounder_dim))
    offsets = rng.normal(0.0, p.style_scale, (S, p.confounder_dim))
    style_emb = (np.repeat(cat_emb, p.styles_per_category, axis=0) + offsets).astype(np.float32)
    content = rng.standard_normal((I, p.content_dim), dtype=np.float32)
    width = p.confounder_dim + p.content_dim
    mixing = {m: (rng.standard_normal((d, width)) / np.sqrt(width)).astype(np.float32)
              for m, d in p.modality_dims.items()}
    order = np.argsort(style, kind="stable")
    style_start = np.searchsorted(style[order], np.arange(S + 1)).astype(np.int64)
    pop_cum = np.concatenate([[0.0], np.cumsum(popularity[order])])
    boost = np.where(promoted, p.promotion_boost, 1.0)[np.arange(S) // p.styles_per_category]
    mass = np.add.reduceat(popularity[order], style_start[:-1]) * boost
    return World(style, popularity, promoted, content, style_emb, mixing,
                 order, style_start, pop_cum, mass)


def item_truth(p: SimulatorParams, world: World) -> pa.Table:
    """The ground truth per item: confounder labels and exposure propensity."""
    cols: dict[str, Any] = {
        "item_id": pa.array(np.arange(p.num_items, dtype=np.int64)),
        "confounder": pa.array((world.style // p.styles_per_category).astype(np.int32)),
    }
    if p.styles_per_category > 1:
        cols["fine_confounder"] = pa.array(world.style.astype(np.int32))
    cols["popularity"] = pa.array(world.popularity.astype(np.float32))
    cols["promoted"] = pa.array(world.promoted[world.style // p.styles_per_category])
    return pa.table(cols)


def item_features(p: SimulatorParams, world: World, modality: str, block: int) -> np.ndarray:
    """Features of items [block*ITEM_BLOCK, ...) for one modality: A_m [emb(Z_i); c_i] + noise."""
    lo, hi = block * ITEM_BLOCK, min((block + 1) * ITEM_BLOCK, p.num_items)
    latent = np.concatenate([world.style_emb[world.style[lo:hi]], world.content[lo:hi]], axis=1)
    feats = latent @ world.mixing[modality].T
    index = list(p.modality_dims).index(modality)
    feats += _rng(p.seed, 2, index, block).normal(0.0, p.feature_noise, feats.shape).astype(np.float32)
    return feats.astype(np.float32, copy=False)


def _row_categorical(rng: np.random.Generator, weights: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One draw from categorical ``weights[row]`` for every entry of ``rows`` (vectorised)."""
    cum = np.cumsum(weights, axis=1)
    cum /= cum[:, -1:]
    n, k = weights.shape
    # Offsetting row r's CDF by r makes one global searchsorted serve every row at once.
    flat = (cum + np.arange(n)[:, None]).ravel()
    pos = np.searchsorted(flat, rows + rng.random(rows.size), side="right") - rows * k
    return np.clip(pos, 0, k - 1)


def _choose(rng: np.random.Generator, p: SimulatorParams, world: World, taste: np.ndarray,
            content_taste: np.ndarray, rows: np.ndarray, biased: bool) -> np.ndarray:
    """One chosen item per entry of ``rows`` (a user index in the block).

    Style ~ taste^w_z * exposure mass; slate of ``slate_size`` items of that style drawn by
    popularity (biased) or uniformly (unbiased); pick argmax of w_c <v_u, c_i> + Gumbel.
    """
    start, stop = world.style_start[:-1], world.style_start[1:]
    mass = world.exposure_mass if biased else (stop - start).astype(np.float64)
    styles = _row_categorical(rng, taste ** p.confounder_weight * mass, rows)
    chosen = np.empty(rows.size, dtype=np.int64)
    # Slices keep the [draws, slate, content_dim] gather cache-sized: ~9x faster than one gather.
    for lo in range(0, rows.size, _DRAW_BATCH):
        s, r = styles[lo:lo + _DRAW_BATCH], rows[lo:lo + _DRAW_BATCH]
        u = rng.random((s.size, p.slate_size))
        first, last = start[s][:, None], stop[s][:, None] - 1
        if biased:  # inverse CDF of popularity inside the style's contiguous segment
            base, top = world.pop_cum[start[s]][:, None], world.pop_cum[stop[s]][:, None]
            pos = np.searchsorted(world.pop_cum, base + u * (top - base), side="right") - 1
        else:
            pos = first + (u * (last + 1 - first)).astype(np.int64)
        slate = world.order[np.clip(pos, first, last)]  # clip guards float rounding at the edges
        score = np.einsum("dck,dk->dc", world.content[slate], content_taste[r])
        # Gumbel-max: Gumbel noise is -log(Exp(1)); float32 is plenty for a random choice.
        expo = np.maximum(rng.standard_exponential(score.shape, np.float32), _TINY)
        score = p.content_weight * score - np.log(expo)
        chosen[lo:lo + _DRAW_BATCH] = slate[np.arange(s.size), score.argmax(axis=1)]
    return chosen


def _keep_first(keys: np.ndarray, rows: np.ndarray, limit: np.ndarray,
                exclude: np.ndarray) -> np.ndarray:
    """Indices of candidates to keep: not in ``exclude``, first occurrence, at most limit[row].

    ``rows`` must be non-decreasing so draw order is the priority within a user.
    """
    ok = ~np.isin(keys, exclude)
    _, first = np.unique(keys, return_index=True)
    is_first = np.zeros(keys.size, dtype=bool)
    is_first[first] = True
    idx = np.flatnonzero(ok & is_first)
    r = rows[idx]
    rank = np.arange(idx.size) - np.searchsorted(r, r, side="left")
    return idx[rank < limit[r]]


def _split(rng: np.random.Generator, p: SimulatorParams, rows: np.ndarray, n: int) -> np.ndarray:
    """Random per-user train/valid/test split of genuine edges (``rows`` sorted by user)."""
    count = np.bincount(rows, minlength=n)
    order = np.lexsort((rng.random(rows.size), rows))
    rank = np.empty(rows.size, dtype=np.int64)
    rank[order] = np.arange(rows.size) - np.searchsorted(rows[order], rows[order], side="left")

    def held(frac: float) -> np.ndarray:  # ~frac of the user's edges, at least one if frac > 0
        if frac <= 0:
            return np.zeros(n, dtype=np.int64)
        return np.maximum(1, np.rint(frac * count)).astype(np.int64)

    splittable = count >= p.min_interactions_to_split
    # Held-out sizes are capped so that every user keeps at least one train edge.
    n_test = np.where(splittable, np.minimum(held(p.test_fraction), count - 1), 0)
    n_valid = np.where(splittable, np.minimum(held(p.valid_fraction), count - 1 - n_test), 0)
    r_test, r_valid = n_test[rows], n_valid[rows]
    return np.select([rank < r_test, rank < r_test + r_valid], [Split.TEST, Split.VALID],
                     Split.TRAIN).astype(np.int8)


def simulate_block(p: SimulatorParams, world: World, block: int) -> dict[str, np.ndarray]:
    """All interactions of users [block*USER_BLOCK, ...), sorted by user then split."""
    rng = _rng(p.seed, 1, block)
    u0 = block * USER_BLOCK
    n = min(USER_BLOCK, p.num_users - u0)
    K1, K2 = p.num_categories, p.styles_per_category
    coarse = rng.dirichlet(np.full(K1, p.coarse_concentration), size=n)
    fine = rng.dirichlet(np.full(K2, p.fine_concentration), size=(n, K1))
    taste = (coarse[:, :, None] * fine).reshape(n, K1 * K2)
    content_taste = rng.normal(0.0, 1.0 / np.sqrt(p.content_dim), (n, p.content_dim)).astype(np.float32)
    mu = np.log(p.interactions_per_user) - p.interactions_sigma ** 2 / 2  # lognormal with that mean
    target = np.clip(np.rint(rng.lognormal(mu, p.interactions_sigma, n)),
                     p.min_interactions, p.max_interactions).astype(np.int64)
    I = p.num_items

    def candidates(wanted: np.ndarray) -> np.ndarray:
        return np.repeat(np.arange(n), np.ceil(wanted * _OVERSAMPLE).astype(np.int64) + 2 * (wanted > 0))

    # Genuine observed edges: biased exposure, then choice by preference.
    rows = candidates(target)
    items = _choose(rng, p, world, taste, content_taste, rows, biased=True)
    keep = _keep_first(items + (u0 + rows) * I, rows, target, np.empty(0, np.int64))
    g_rows, g_items = rows[keep], items[keep]
    g_split = _split(rng, p, g_rows, n)
    seen = g_items + (u0 + g_rows) * I

    # Accidental clicks: noise/(train + noise) = noise_rate in expectation.
    n_train = np.bincount(g_rows[g_split == Split.TRAIN], minlength=n)
    k = np.floor(n_train * p.noise_rate / (1 - p.noise_rate) + rng.random(n)).astype(np.int64)
    rows = candidates(k)
    items = rng.integers(0, I, rows.size)
    keep = _keep_first(items + (u0 + rows) * I, rows, k, seen)
    n_rows, n_items = rows[keep], items[keep]
    seen = np.concatenate([seen, n_items + (u0 + n_rows) * I])

    # Unbiased test: the same preference, uniform exposure, none of the user's observed items.
    want = np.full(n, p.unbiased_per_user, dtype=np.int64)
    rows = candidates(want)
    items = _choose(rng, p, world, taste, content_taste, rows, biased=False)
    keep = _keep_first(items + (u0 + rows) * I, rows, want, seen)
    b_rows, b_items = rows[keep], items[keep]

    # Unbiased valid: drawn the same way, apart from everything above. It is drawn last (and only
    # when asked for) so that every other split stays identical to a dataset without it.
    v_rows = v_items = np.empty(0, np.int64)
    if p.unbiased_valid_per_user > 0:
        seen = np.concatenate([seen, b_items + (u0 + b_rows) * I])
        want = np.full(n, p.unbiased_valid_per_user, dtype=np.int64)
        # 4x the usual candidates: the same preference already supplied unbiased_test's items,
        # so many more draws collide with something the user has.
        rows = candidates(4 * want)
        items = _choose(rng, p, world, taste, content_taste, rows, biased=False)
        keep = _keep_first(items + (u0 + rows) * I, rows, want, seen)
        v_rows, v_items = rows[keep], items[keep]

    user = np.concatenate([g_rows, n_rows, b_rows, v_rows]) + u0
    split = np.concatenate([g_split, np.full(n_rows.size, Split.TRAIN, np.int8),
                            np.full(b_rows.size, Split.UNBIASED_TEST, np.int8),
                            np.full(v_rows.size, Split.UNBIASED_VALID, np.int8)])
    noise = np.concatenate([np.zeros(g_rows.size, bool), np.ones(n_rows.size, bool),
                            np.zeros(b_rows.size + v_rows.size, bool)])
    item = np.concatenate([g_items, n_items, b_items, v_items]).astype(np.int64)
    order = np.lexsort((item, split, user))
    return {"user_id": user[order].astype(np.int64), "item_id": item[order],
            "split": split[order], "is_noise": noise[order]}


def iter_blocks(p: SimulatorParams, world: World) -> Iterator[dict[str, np.ndarray]]:
    """Interaction blocks in user order; memory is one block at a time."""
    for block in range(-(-p.num_users // USER_BLOCK)):
        yield simulate_block(p, world, block)


def simulate(p: SimulatorParams) -> SimulatedData:
    """The whole dataset in memory (pure function of ``p``)."""
    world = build_world(p)
    blocks = list(iter_blocks(p, world))
    cols = {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}
    n_item_blocks = -(-p.num_items // ITEM_BLOCK)
    feats = {m: np.concatenate([item_features(p, world, m, b) for b in range(n_item_blocks)])
             for m in p.modality_dims}
    return SimulatedData(p, cols["user_id"], cols["item_id"], cols["split"], cols["is_noise"],
                         item_truth(p, world), feats)


def generate(url: str, params: SimulatorParams, *, overwrite: bool = False,
             storage_options: dict | None = None, progress: bool = False) -> Manifest:
    """Simulate and write a canonical dataset at ``url``, streaming user and item blocks."""
    world = build_world(params)
    blocks = iter_blocks(params, world)
    if progress:
        from tqdm import tqdm
        blocks = tqdm(blocks, total=-(-params.num_users // USER_BLOCK), unit="block",
                      desc=f"simulating {params.num_users} users")
    with DatasetWriter(url, overwrite=overwrite, storage_options=storage_options) as w:
        for cols in blocks:
            w.write_interactions(cols)
        for m in params.modality_dims:
            for b in range(-(-params.num_items // ITEM_BLOCK)):
                lo = b * ITEM_BLOCK
                feats = item_features(params, world, m, b)
                w.write_item_features(m, np.arange(lo, lo + len(feats), dtype=np.int64), feats)
        w.write_truth("items", item_truth(params, world))
        name = f"synthetic-u{params.num_users}-i{params.num_items}-s{params.seed}"
        return w.commit(name=name, num_users=params.num_users, num_items=params.num_items,
                        source={"importer": "synthetic", **dataclasses.asdict(params)})


# Short aliases that data_loaders.prepare documents (`--users N --items M`).
_ALIASES = {"num_users": ["--users"], "num_items": ["--items"]}


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--kebab-case`` flag per ``SimulatorParams`` field, typed and documented."""
    hints = typing.get_type_hints(SimulatorParams)
    group = parser.add_argument_group("synthetic simulator (docs/SIMULATOR.md)")
    for f in dataclasses.fields(SimulatorParams):
        flags = [f"--{f.name.replace('_', '-')}", *_ALIASES.get(f.name, [])]
        group.add_argument(*flags, dest=f.name, type=hints[f.name], default=f.default,
                           help=f"{f.metadata['help']} (default: %(default)s)")


def run_from_args(args: argparse.Namespace, url: str, overwrite: bool) -> Manifest:
    """Build ``SimulatorParams`` from parsed flags and write the dataset at ``url``.

    Bad parameters become a DatasetError, which the CLI reports as a message (exit code 2).
    """
    try:
        params = SimulatorParams(**{f.name: getattr(args, f.name)
                                    for f in dataclasses.fields(SimulatorParams)})
    except ValueError as e:
        raise DatasetError(str(e)) from None
    return generate(url, params, overwrite=overwrite, progress=True,
                    storage_options=getattr(args, "storage_options", None))

"""Chunked full-ranking evaluation with an exact distributed reduce.

Protocol (docs/anchors.md): every item is ranked for every user by the dot product of the
final user and item representations; the user's excluded items (training items, and for the
stricter variant also valid items) get score -inf and are never recommended. With binary
relevance and a user's held-out set T:

* Recall@K = hits / |T|,   Precision@K = hits / K,   HitRate@K = 1 if hits > 0,
* NDCG@K = sum_{hit at 0-based position p < K} 1 / log2(p + 2), divided by the ideal DCG over
  min(|T|, K) positions.

Metrics are averaged over users with at least one held-out item. A held-out item that is also
excluded still counts in |T| (it can never be hit); on valid data the two sets are disjoint.

Ties are broken towards the lower item id, whatever the chunk sizes (torch.topk alone picks
arbitrarily among equal scores), so the ranking is a pure function of the scores.

Memory stays bounded by ``user_chunk * item_chunk`` scores: for each block of users the items
are scanned in chunks and a running top-k is merged with each chunk's top-k.

Distributed: each rank evaluates ``users[rank::world_size]`` and returns metric *sums* and a
user count (:class:`MetricSums`); an ``all_reduce(SUM)`` of those gives the single-process
means (per-user values are identical; only the float64 summation order differs, ~1e-16).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from data_loaders.graph import CSR
from trainer.progress import progress_bar

FAMILIES = ("recall", "ndcg", "precision", "hit")
DEFAULT_KS = (10, 20, 50)


def metric_keys(ks: Sequence[int]) -> list[str]:
    """Metric names in their canonical (flat-tensor) order, e.g. ``recall@20``."""
    return [f"{family}@{k}" for family in FAMILIES for k in ks]


@dataclass
class MetricSums:
    """Per-metric sums over users plus the number of users: addable and all_reduce-able."""

    sums: dict[str, float]
    count: int

    def __add__(self, other: MetricSums) -> MetricSums:
        if self.sums.keys() != other.sums.keys():
            raise ValueError("cannot add MetricSums over different metrics")
        return MetricSums({k: v + other.sums[k] for k, v in self.sums.items()}, self.count + other.count)

    def to_tensor(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """float64 ``[*sums (in dict order), count]``; float64 keeps counts exact up to 2**53."""
        return torch.tensor([*self.sums.values(), float(self.count)], dtype=torch.float64, device=device)

    @classmethod
    def from_tensor(cls, keys: Sequence[str], flat: torch.Tensor) -> MetricSums:
        values = flat.detach().cpu().tolist()
        if len(values) != len(keys) + 1:
            raise ValueError(f"expected {len(keys) + 1} values, got {len(values)}")
        return cls(dict(zip(keys, values[:-1])), int(round(values[-1])))

    def means(self) -> dict[str, float]:
        """Averages (NaN when no user was counted) plus ``num_users``."""
        out = {k: (v / self.count if self.count else float("nan")) for k, v in self.sums.items()}
        out["num_users"] = self.count
        return out


@dataclass
class EvalResult:
    """Result of :func:`evaluate`.

    ``metrics`` and ``num_users`` are global after a reduce; ``users`` and ``per_user`` are always
    this rank's share (users with at least one held-out item, in evaluation order).
    """

    metrics: dict[str, float]
    num_users: int
    sums: MetricSums
    users: np.ndarray
    per_user: dict[str, np.ndarray] | None = None


def _gather_rows(csr: CSR, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in ``rows``, column) of every stored entry of ``rows``, vectorised.

    Rows come out in the order given and columns keep the CSR's (sorted) order within a row.
    """
    starts = csr.indptr[rows]
    lengths = csr.indptr[rows + 1] - starts
    pos = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    # offset of each entry inside its row = global entry number - first entry number of its row
    within = np.arange(len(pos), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return pos, csr.indices[np.repeat(starts, lengths) + within]


def _topk_lowest_id(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise top-k ordered by (score desc, column asc); exact even with ties.

    Every entry >= the k-th largest score is ranked explicitly, so this costs a pass over
    ``scores`` plus sorts of the candidates: it is the slow path for rows that have ties.
    """
    rows = scores.shape[0]
    threshold = torch.topk(scores, k, dim=1, sorted=False).values.min(dim=1, keepdim=True).values
    r, c = (scores >= threshold).nonzero(as_tuple=True)  # row-major: columns ascending per row
    v = scores[r, c]
    order = torch.sort(v, descending=True, stable=True).indices  # ties keep column order
    order = order[torch.sort(r[order], stable=True).indices]  # regroup by row, order kept
    r, c, v = r[order], c[order], v[order]
    counts = torch.bincount(r, minlength=rows)
    first = torch.cumsum(counts, 0) - counts
    keep = torch.arange(len(r), device=scores.device) - first[r] < k
    return v[keep].view(rows, k), c[keep].view(rows, k)


def _select(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``min(k, n)`` of each row of ``scores [B, n]`` by (score desc, column asc).

    torch.topk orders equal scores arbitrarily, and among scores equal to the k-th largest it
    picks arbitrarily. Taking k+1 sorted values exposes both cases (two adjacent equal values);
    only rows with such a tie take the exact slow path. Ties among -inf (excluded items) are
    ignored: those positions are padding.
    """
    n = scores.shape[1]
    vals, cols = torch.topk(scores, min(k + 1, n), dim=1)
    tied = ((vals[:, 1:] == vals[:, :-1]) & (vals[:, 1:] > float("-inf"))).any(1)
    vals, cols = vals[:, :k], cols[:, :k]
    if tied.any():
        rows = tied.nonzero().squeeze(1)
        vals[rows], cols[rows] = _topk_lowest_id(scores[rows], min(k, n))
    return vals, cols


@torch.no_grad()
def topk_items(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    users: np.ndarray,
    k: int,
    exclude: Sequence[CSR] = (),
    *,
    item_chunk: int = 1 << 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items for ``users`` by ``user_emb[u] . item_emb[i]``, excluded items never returned.

    Returns ``(scores, items)``, both ``[len(users), k]`` on ``user_emb.device``, ordered by score
    descending then item id ascending. Positions left when fewer than ``k`` items are eligible
    (``k`` > number of items, or most items excluded) hold item ``-1`` and score ``-inf``.
    """
    device = user_emb.device
    users = np.asarray(users, dtype=np.int64)
    num_items = item_emb.shape[0]
    u = user_emb[torch.as_tensor(users, device=device)]
    # Excluded (row, col) pairs of these users, sorted by column once, so that each item chunk
    # takes its slice with a binary search instead of rescanning the CSRs.
    pairs = [_gather_rows(m, users) for m in exclude]
    ex_rows = np.concatenate([p[0] for p in pairs] + [np.empty(0, np.int64)])
    ex_cols = np.concatenate([p[1] for p in pairs] + [np.empty(0, np.int64)])
    by_col = np.argsort(ex_cols, kind="stable")
    ex_cols = ex_cols[by_col]
    ex_rows_t = torch.as_tensor(ex_rows[by_col], device=device)
    ex_cols_t = torch.as_tensor(ex_cols, device=device)

    best_s = torch.full((len(users), k), float("-inf"), dtype=u.dtype, device=device)
    best_i = torch.full((len(users), k), -1, dtype=torch.int64, device=device)
    for lo in range(0, num_items, item_chunk):
        hi = min(lo + item_chunk, num_items)
        s = u @ item_emb[lo:hi].T
        a, b = np.searchsorted(ex_cols, (lo, hi))
        s[ex_rows_t[a:b], ex_cols_t[a:b] - lo] = float("-inf")
        cs, ci = _select(s, k)
        ci = torch.where(cs == float("-inf"), -1, ci + lo)  # an excluded item is no candidate
        if lo == 0:  # nothing to merge with yet (the common single-chunk case)
            best_s[:, : ci.shape[1]], best_i[:, : ci.shape[1]] = cs, ci
            continue
        # Columns of [running, chunk] are in item-id order among equal scores (running ids are
        # lower, and each part is ordered by score then id), so _select's column tie-break is
        # the id tie-break.
        merged_s, order = _select(torch.cat([best_s, cs], 1), k)
        best_s, best_i = merged_s, torch.cat([best_i, ci], 1).gather(1, order)
    return best_s, best_i


def ranking_metrics(
    topk: torch.Tensor, targets: CSR, users: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, torch.Tensor]:
    """Per-user metrics (float64, ``[len(users)]``) from ranked item ids ``topk`` (``-1`` = none).

    ``topk`` must have at least ``max(ks)`` columns. Users without held-out items get 0; the
    caller drops them from averages.
    """
    device = topk.device
    users = np.asarray(users, dtype=np.int64)
    width = topk.shape[1]
    if width < max(ks):
        raise ValueError(f"topk has {width} columns, fewer than max(ks)={max(ks)}")
    # Hit test by binary search on the sorted keys row * num_items + item. np.unique also drops
    # duplicate pairs (the CSR keeps them), so |T| counts distinct items. Padding (-1) is masked
    # out explicitly below.
    pos, cols = _gather_rows(targets, users)
    unique = np.unique(pos * targets.num_cols + cols)
    keys = torch.as_tensor(unique, device=device)
    n_true = torch.as_tensor(np.bincount(unique // targets.num_cols, minlength=len(users)), device=device)
    query = torch.arange(len(users), device=device)[:, None] * targets.num_cols + topk
    if len(keys):
        found = keys[torch.searchsorted(keys, query).clamp(max=len(keys) - 1)] == query
    else:
        found = torch.zeros_like(query, dtype=torch.bool)
    hits = (found & (topk >= 0)).to(torch.float64)

    discount = 1.0 / torch.log2(torch.arange(width, device=device, dtype=torch.float64) + 2.0)
    cum_hits = hits.cumsum(1)
    cum_dcg = (hits * discount).cumsum(1)
    cum_ideal = discount.cumsum(0)
    has_true = n_true > 0
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        h = cum_hits[:, k - 1]
        ideal = cum_ideal[(n_true.clamp(max=k) - 1).clamp(min=0)]
        out[f"recall@{k}"] = torch.where(has_true, h / n_true.clamp(min=1), 0.0)
        out[f"ndcg@{k}"] = torch.where(has_true, cum_dcg[:, k - 1] / ideal, 0.0)
        out[f"precision@{k}"] = h / k
        out[f"hit@{k}"] = (h > 0).to(torch.float64)
    return {key: out[key] for key in metric_keys(ks)}


def sample_eval_users(targets: CSR, n: int, seed: int) -> tuple[np.ndarray | None, int]:
    """(sorted user ids, number of eligible users) for an evaluation on a random sample of users.

    Eligible users are those with at least one held-out item in ``targets`` (the only users
    :func:`evaluate` counts). ``n`` of them are drawn uniformly without replacement from a stream
    keyed by ``seed`` alone, so every evaluation of a run scores the same users. Returns ``None``
    for the ids (evaluate everyone: the protocol) when ``n <= 0`` or ``n`` covers every eligible user.
    Cost: O(number of users), once per call.
    """
    eligible = np.flatnonzero(np.diff(targets.indptr) > 0)
    if n <= 0 or n >= len(eligible):
        return None, len(eligible)
    rng = np.random.default_rng([seed, 0xE7A1])  # its own stream, apart from the training ones
    return np.sort(rng.choice(eligible, size=n, replace=False)), len(eligible)


def _check_shapes(user_emb: torch.Tensor, item_emb: torch.Tensor, targets: CSR, exclude: Sequence[CSR]) -> None:
    if user_emb.device != item_emb.device or user_emb.shape[1] != item_emb.shape[1]:
        raise ValueError("user_emb and item_emb must share device and dimension")
    for name, m in [("targets", targets), *((f"exclude[{j}]", m) for j, m in enumerate(exclude))]:
        if (m.num_rows, m.num_cols) != (user_emb.shape[0], item_emb.shape[0]):
            raise ValueError(
                f"{name} is {m.num_rows}x{m.num_cols}, embeddings are {user_emb.shape[0]}x{item_emb.shape[0]}"
            )
    # NaN would break the >= threshold selection (and any ranking): refuse it up front.
    if not (torch.isfinite(user_emb).all() and torch.isfinite(item_emb).all()):
        raise ValueError("embeddings contain NaN or inf")


def _resolve_world(rank: int | None, world_size: int | None, reduce: bool) -> tuple[int, int, bool]:
    """Rank/world size default to torch.distributed's; guards against double counting."""
    initialised = dist.is_available() and dist.is_initialized()
    if rank is None:
        rank = dist.get_rank() if initialised else 0
    if world_size is None:
        world_size = dist.get_world_size() if initialised else 1
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world of size {world_size}")
    do_reduce = reduce and initialised
    if do_reduce and world_size != dist.get_world_size():
        # Summing over ranks that did not split the users would count users several times.
        raise ValueError(f"world_size={world_size} but torch.distributed has {dist.get_world_size()} ranks")
    return rank, world_size, do_reduce


@torch.no_grad()
def evaluate(
    user_emb: torch.Tensor,
    item_emb: torch.Tensor,
    targets: CSR,
    exclude: Sequence[CSR] = (),
    *,
    ks: Sequence[int] = DEFAULT_KS,
    users: np.ndarray | None = None,
    user_chunk: int = 256,
    item_chunk: int = 1 << 16,
    rank: int | None = None,
    world_size: int | None = None,
    reduce: bool = True,
    per_user: bool = False,
    progress: str | None = None,
) -> EvalResult:
    """Full-ranking Recall/NDCG/Precision/HitRate@K of ``targets`` with ``exclude`` masked.

    ``users`` (default: all) is filtered to users with a held-out item; this rank evaluates
    ``users[rank::world_size]`` (rank/world size default to torch.distributed's, else 0/1).
    With ``reduce`` and torch.distributed initialised, every rank must call this (an
    ``all_reduce(SUM)`` of the sums), and all get the global means. Memory is bounded by
    ``user_chunk * item_chunk`` scores: 64 MiB float32 by default. On CPU a
    256-user block that fits in cache (Baby: 7 MB of scores) ran faster than larger ones; on a
    GPU larger blocks pay off. ``progress`` (a description, e.g. "valid") draws a bar over this
    rank's user blocks; the loop passes it on rank 0 only.
    """
    _check_shapes(user_emb, item_emb, targets, exclude)
    ks = tuple(int(k) for k in ks)
    if min(ks) < 1:
        raise ValueError(f"ks must be positive, got {ks}")
    rank, world_size, do_reduce = _resolve_world(rank, world_size, reduce)
    keys = metric_keys(ks)

    users = np.arange(targets.num_rows, dtype=np.int64) if users is None else np.asarray(users, dtype=np.int64)
    users = users[np.diff(targets.indptr)[users] > 0][rank::world_size]

    device = user_emb.device
    totals = torch.zeros(len(keys), dtype=torch.float64, device=device)
    collected: list[torch.Tensor] = []
    starts = range(0, len(users), user_chunk)
    blocks = progress_bar(starts, total=len(starts), desc=f"evaluating {progress}", unit="block") if progress else starts
    for start in blocks:
        block = users[start : start + user_chunk]
        _, top = topk_items(user_emb, item_emb, block, max(ks), exclude, item_chunk=item_chunk)
        values = torch.stack(list(ranking_metrics(top, targets, block, ks).values()))  # [metrics, B]
        totals += values.sum(1)
        if per_user:
            collected.append(values.cpu())

    sums = MetricSums(dict(zip(keys, totals.cpu().tolist())), len(users))
    if do_reduce:  # every rank gets here, even one without users, so the collective matches
        flat = sums.to_tensor("cuda" if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        sums = MetricSums.from_tensor(keys, flat)

    table = None
    if per_user:
        stacked = torch.cat(collected, 1).numpy() if collected else np.zeros((len(keys), 0))
        table = dict(zip(keys, stacked))
    return EvalResult(sums.means(), sums.count, sums, users, table)


def metrics_table(metrics: dict[str, float], ks: Sequence[int] | None = None, digits: int = 4) -> str:
    """Markdown table of ``family@K`` metrics: one row per family, one column per K.

    ``ks`` picks and orders the columns (default: every K present); other keys are ignored.
    """
    parsed = {(key.split("@")[0], int(key.split("@")[1])): v for key, v in metrics.items() if "@" in key}
    ks = sorted({k for _, k in parsed}) if ks is None else list(ks)
    families = [f for f in FAMILIES if any(fam == f for fam, _ in parsed)]
    lines = ["| metric | " + " | ".join(f"@{k}" for k in ks) + " |", "|---" * (len(ks) + 1) + "|"]
    for f in families:
        row = [f"{parsed[f, k]:.{digits}f}" if (f, k) in parsed else "" for k in ks]
        lines.append(f"| {f} | " + " | ".join(row) + " |")
    return "\n".join(lines)

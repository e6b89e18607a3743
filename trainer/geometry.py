"""How a model's embeddings sit on the sphere: alignment, uniformity and collaborative clustering.

    python -m trainer.geometry RUN_DIR [RUN_DIR ...] [--group-seeds] [--parts] [--epoch E] [--samples N]
        [--markdown-section NAME --write FILE]

Why: contrastive terms (SimGCL's `id_contrast`, the cross-view InfoNCE with `contrast.view:
mediator`) lowered TikTok's valid Recall@20 to the popularity level while the BPR loss still fell.
The InfoNCE's in-batch negatives push nodes apart (uniformity); the ranking generalises through
users who share items being close (clustering). These figures say which of the two a run's
final embeddings h (what ranks, `final_embeddings()`, no popularity offset) have, at its best
checkpoint (or the one written after `--epoch`: runs compared at their best epochs differ in
training time too), all on L2-normalised rows (Wang & Isola, ICML 2020; DirectAU, Wang et al., KDD 2022):

- alignment = mean over training pairs (u, i) of ||ĥ_u - ĥ_i||^2 (0 = each user on its items; 2 =
  orthogonal);
- uniformity (users, items) = log mean over distinct pairs of a sample of exp(-2 ||x̂ - ŷ||^2)
  (0 = all rows equal; about -4 for rows spread evenly in many dimensions);
- co-user cosine = mean cos(ĥ_u, ĥ_v) over pairs of users who share a training item, minus the
  mean over random user pairs: how much closer collaborative neighbours are than strangers;
- mean row norms (before normalising).

`--parts` (causal runs) adds a row per part of h: the ID view ẽ (backbone layer mean), the ID rows
e (layer 0), the front-door's h^fd and its mediator m, with the gates in the row's name.

Pairs are drawn with a fixed generator (`--samples`, default 4096 rows / 20000 pairs), so a run's
figures repeat exactly. Diagnostic only: nothing is selected on them.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

from data_loaders.format import Split
from data_loaders.graph import CSR
from trainer.report import add_section_args, by_seed_group, check_section_args, print_and_write, run_name
from trainer.restore import RestoreError, restore_run


@dataclass
class Geometry:
    name: str
    alignment: float
    uniformity_users: float
    uniformity_items: float
    co_user_cosine: float
    user_norm: float
    item_norm: float


def alignment(user: torch.Tensor, item: torch.Tensor, train: CSR, chunk: int = 1 << 20) -> float:
    """Mean ||û - î||^2 over every training pair (rows L2-normalised), `chunk` pairs at a time so
    that memory stays O(chunk x d) on a catalog-sized graph."""
    if train.nnz == 0:
        raise ValueError("alignment needs at least one training pair")
    u, i = F.normalize(user.float(), dim=-1), F.normalize(item.float(), dim=-1)
    users, total = train.row_ids(), 0.0
    for start in range(0, train.nnz, chunk):
        rows = torch.from_numpy(users[start:start + chunk])
        cols = torch.from_numpy(train.indices[start:start + chunk].astype(np.int64))
        total += float((u[rows] - i[cols]).double().pow(2).sum())
    return total / train.nnz


def uniformity(x: torch.Tensor, samples: int, generator: torch.Generator) -> float:
    """log mean exp(-2 ||x̂_a - x̂_b||^2) over the distinct pairs of at most `samples` random rows."""
    rows = torch.randperm(x.shape[0], generator=generator)[:samples]
    z = F.normalize(x.double()[rows], dim=-1)
    if z.shape[0] < 2:
        raise ValueError(f"uniformity needs at least 2 rows, got {z.shape[0]}")
    d2 = torch.cdist(z, z).pow(2)
    off = ~torch.eye(z.shape[0], dtype=torch.bool)
    return float(torch.logsumexp(-2 * d2[off], 0) - np.log(int(off.sum())))


def co_user_cosine(user: torch.Tensor, train: CSR, pairs: int, generator: torch.Generator) -> float:
    """Mean cosine of users who share a training item minus that of random user pairs.

    A shared-item pair: a random training edge (u, i), then a random other user v of item i (edges
    of items with one user are skipped). Random pairs: two independent uniform users (u != v)."""
    by_item = CSR.from_pairs(train.indices, train.row_ids(), train.num_cols, train.num_rows)  # items x users
    counts = np.diff(by_item.indptr)
    edges = np.nonzero(np.repeat(counts, counts) >= 2)[0]  # positions in by_item.indices of shared items
    if edges.size == 0:
        raise ValueError("co-user cosine needs an item with at least two training users")
    item_of = np.repeat(np.arange(by_item.num_rows), counts)
    pick = edges[torch.randint(edges.size, (pairs,), generator=generator).numpy()]
    it = item_of[pick]
    start, n = by_item.indptr[it], counts[it]
    # another position of the same item: offset 1..n-1 from the picked one, modulo n
    other = start + (pick - start + torch.randint(1 << 30, (pairs,), generator=generator).numpy() % (n - 1) + 1) % n
    u, v = by_item.indices[pick], by_item.indices[other]
    z = F.normalize(user.double(), dim=-1)
    shared = (z[torch.from_numpy(u.astype(np.int64))] * z[torch.from_numpy(v.astype(np.int64))]).sum(-1).mean()
    a = torch.randint(user.shape[0], (pairs,), generator=generator)
    b = (a + torch.randint(1, user.shape[0], (pairs,), generator=generator)) % user.shape[0]
    return float(shared - (z[a] * z[b]).sum(-1).mean())


def geometry(name: str, user: torch.Tensor, item: torch.Tensor, train: CSR, samples: int = 4096,
             pairs: int = 20000, seed: int = 0) -> Geometry:
    g = torch.Generator().manual_seed(seed)
    return Geometry(name, alignment(user, item, train), uniformity(user, samples, g), uniformity(item, samples, g),
                    co_user_cosine(user, train, pairs, g), float(user.norm(dim=-1).mean()),
                    float(item.norm(dim=-1).mean()))


def run_geometry(run_dir: str, samples: int, parts: bool = False, epoch: int | None = None) -> list[Geometry]:
    """[h] of the run's best checkpoint (or the one after `epoch`), and with `parts` (causal runs)
    the parts of h after it."""
    run = restore_run(run_dir.rstrip("/"), epoch=epoch)
    name = run_name(run_dir) if epoch is None else f"{run_name(run_dir)} @ {epoch}"
    train = run.splits[Split.TRAIN]
    with torch.no_grad():
        user, item = run.model.final_embeddings()
        out = [geometry(name, user, item, train, samples)]
        if not parts:
            return out
        if not hasattr(run.model, "represent"):
            raise ValueError(f"{run_dir}: --parts needs a causal run (model.name={run.cfg.model.name})")
        r = run.model.represent()
    gates = f"g_fd {float(r.gate_frontdoor):.3f}, g_bd {float(r.gate_backdoor):.3f}"
    views = [("ẽ (ID view)", r.id_user, r.id_item), ("e (ID rows)", r.ego_user, r.ego_item),
             (f"h^fd ({gates})", r.frontdoor_user, r.frontdoor_item), ("m (mediator)", r.mediator_user, r.mediator_item)]
    return out + [geometry(f"{name}: {label}", u, i, train, samples) for label, u, i in views if u is not None]


def group(results: list[Geometry]) -> list[Geometry]:
    """Seed groups (names equal once `_s<seed>` is dropped): the mean of each figure."""
    keys = [f.name for f in fields(Geometry)][1:]
    return [Geometry(f"{g} (n={len(rs)})", *(float(np.mean([getattr(r, k) for r in rs])) for k in keys))
            for g, rs in by_seed_group(results).items()]


def render(results: list[Geometry]) -> str:
    lines = ["Final embeddings h at each run's best checkpoint, rows L2-normalised (`python -m trainer.geometry`).", "",
             "| run | alignment | uniformity (users) | uniformity (items) | co-user cosine | mean norm users / items |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.name} | {r.alignment:.3f} | {r.uniformity_users:.3f} | {r.uniformity_items:.3f} | "
                     f"{r.co_user_cosine:.3f} | {r.user_norm:.3f} / {r.item_norm:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--samples", type=int, default=4096, help="rows per uniformity sample (default %(default)s)")
    parser.add_argument("--group-seeds", action="store_true", help="one row per seed group (mean over seeds)")
    parser.add_argument("--parts", action="store_true", help="causal runs: also the parts of h (ẽ, e, h^fd, m)")
    parser.add_argument("--epoch", type=int, help="every run's checkpoint written after this epoch (default: the best)")
    add_section_args(parser)
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    if args.samples < 2:
        parser.error(f"--samples must be at least 2, got {args.samples}")
    try:
        results = [g for d in args.runs for g in run_geometry(d, args.samples, args.parts, args.epoch)]
    except (RestoreError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_and_write(args, render(group(results) if args.group_seeds else results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

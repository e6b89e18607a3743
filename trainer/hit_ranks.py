"""Where in the list a model's hits land, and what it puts first.

    python -m trainer.hit_ranks RUN_DIR [RUN_DIR ...] [--split valid|test] [--bands 1 2 4 8 12 16 21 31 51]
        [--group-seeds] [--markdown-section NAME --write FILE]

Recall@20 counts a hit at rank 1 and at rank 20 alike; NDCG@20 weighs the first 1 / log2(2) = 1
and the last 1 / log2(21) = 0.23. Two models with the same recall can therefore differ in NDCG by
*where* their hits are, and this tool shows it: for each run (or seed group), the hits per 1,000
users in each rank band [b_j, b_{j+1}) of the top max(bands) - 1, plus what the model ranks first:
how many distinct items are some user's top 1, the share of users whose top 1 is one of the ten
commonest top-1 items, and the median training degree (popularity) of the top-1 items and of all
top-K items.

Each run's best checkpoint is restored on CPU (trainer/restore.py) and ranked exactly as the
evaluator ranks it (trainer.evaluate.topk_items: training items masked; valid items not masked for
test, the primary protocol), over the users with a held-out item in the split. Users with several
held-out items count each hit at its own rank. Reading test here is for reporting only: choose on
valid (../shared/docs/anchors.md).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from data_loaders.format import Split
from data_loaders.graph import CSR
from trainer.evaluate import topk_items
from trainer.report import add_section_args, check_section_args, run_name, by_seed_group, print_and_write
from trainer.restore import RestoreError, restore_run
from trainer.ranking import ranking_embeddings

SPLITS = {"valid": Split.VALID, "test": Split.TEST}
DEFAULT_BANDS = (1, 2, 4, 8, 12, 16, 21, 31, 51)
COMMON_TOP1 = 10  # "the ten commonest top-1 items"


@dataclass
class HitRanks:
    """One run's figures on one split."""

    name: str
    users: int                    # users with a held-out item
    per_band: np.ndarray          # hits per 1,000 users in each band [b_j, b_{j+1})
    distinct_top1: int
    common_top1_share: float      # share of users whose top 1 is one of the COMMON_TOP1 commonest
    top1_degree: float            # median training degree of the users' top-1 items
    topk_degree: float            # median training degree of all their top-K items


def check_bands(bands: tuple[int, ...]) -> None:
    if len(bands) < 2 or list(bands) != sorted(set(bands)) or bands[0] < 1:
        raise ValueError(f"--bands must be at least two increasing positive ranks, got {list(bands)}")


def hit_positions(top: np.ndarray, users: np.ndarray, held_out: CSR) -> np.ndarray:
    """1-based ranks of every hit: positions j of `top[r, j]` held out for `users[r]`."""
    num_items = held_out.num_cols
    starts, ends = held_out.indptr[users], held_out.indptr[users + 1]
    rows = np.repeat(np.arange(len(users)), ends - starts)
    held = np.concatenate([held_out.indices[s:e] for s, e in zip(starts, ends)]) if len(users) else np.zeros(0, int)
    held_keys = rows.astype(np.int64) * num_items + held
    top_keys = np.arange(len(users), dtype=np.int64)[:, None] * num_items + top
    hit = np.isin(top_keys, held_keys) & (top >= 0)
    return np.nonzero(hit)[1] + 1


def hit_ranks(user_emb, item_emb, held_out: CSR, exclude: list[CSR], train: CSR, name: str,
              bands: tuple[int, ...] = DEFAULT_BANDS) -> HitRanks:
    """The figures of one model's embeddings (scored as ⟨u, i⟩, like the evaluator)."""
    check_bands(bands)
    users = np.nonzero(np.diff(held_out.indptr))[0]
    if len(users) == 0:
        raise ValueError(f"{name}: no user has a held-out item in this split")
    k = bands[-1] - 1
    _, top = topk_items(user_emb, item_emb, users, k, exclude)
    top = top.cpu().numpy()
    ranks = hit_positions(top, users, held_out)
    per_band = np.array([((ranks >= a) & (ranks < b)).sum() for a, b in zip(bands[:-1], bands[1:])]) * 1000 / len(users)
    degree = np.bincount(train.indices, minlength=item_emb.shape[0])  # train is users x items
    top1 = top[:, 0]
    _, counts = np.unique(top1, return_counts=True)
    common = np.sort(counts)[::-1][:COMMON_TOP1].sum() / len(users)
    valid_topk = top[top >= 0]
    return HitRanks(name, len(users), per_band, len(counts), float(common), float(np.median(degree[top1])),
                    float(np.median(degree[valid_topk])))


def run_hit_ranks(run_dir: str, split: str, bands: tuple[int, ...]) -> HitRanks:
    run = restore_run(run_dir.rstrip("/"))
    user_emb, item_emb = ranking_embeddings(run.model, run.splits[Split.TRAIN], run.cfg.eval.popularity_offset)
    train = run.splits[Split.TRAIN]  # users x items
    return hit_ranks(user_emb, item_emb, run.splits[SPLITS[split]], [train], train, run_name(run_dir),
                     bands)


def group(results: list[HitRanks]) -> list[HitRanks]:
    """Seed groups (names equal once `_s<seed>` is dropped): the mean of each figure over the group."""
    return [HitRanks(f"{g} (n={len(rs)})", int(np.mean([r.users for r in rs])),
                     np.mean([r.per_band for r in rs], axis=0), int(round(np.mean([r.distinct_top1 for r in rs]))),
                     float(np.mean([r.common_top1_share for r in rs])), float(np.mean([r.top1_degree for r in rs])),
                     float(np.mean([r.topk_degree for r in rs])))
            for g, rs in by_seed_group(results).items()]


def render(results: list[HitRanks], split: str, bands: tuple[int, ...]) -> str:
    labels = [f"{a}" if b - a == 1 else f"{a}-{b - 1}" for a, b in zip(bands[:-1], bands[1:])]
    head = ("| run | users | " + " | ".join(f"rank {x}" for x in labels)
            + f" | hits@{bands[-1] - 1} | distinct top-1 items | top-1 in the {COMMON_TOP1} commonest"
            + " | median degree, top-1 | median degree, top-K |")
    lines = [f"Hits per 1,000 users with a held-out item on **{split}**, by rank band (training items masked)."
             " Degree: the item's number of training interactions.", "", head,
             "|" + "---|" * (len(labels) + 7)]
    for r in results:
        cells = [r.name, str(r.users), *(f"{x:.1f}" for x in r.per_band), f"{r.per_band.sum():.1f}",
                 str(r.distinct_top1), f"{r.common_top1_share:.3f}", f"{r.top1_degree:.0f}", f"{r.topk_degree:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--split", choices=sorted(SPLITS), default="valid")
    parser.add_argument("--bands", nargs="+", type=int, default=list(DEFAULT_BANDS),
                        help="band edges: hits at ranks [b_j, b_{j+1}) (default %(default)s)")
    parser.add_argument("--group-seeds", action="store_true", help="one row per seed group (mean over seeds)")
    add_section_args(parser)
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    bands = tuple(args.bands)
    try:
        check_bands(bands)
        results = [run_hit_ranks(d, args.split, bands) for d in args.runs]
    except (RestoreError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = render(group(results) if args.group_seeds else results, args.split, bands)
    print_and_write(args, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How much popularity a finished run's ranking wants: sweep eval.popularity_offset at its best checkpoint.

    python -m trainer.popularity_offset RUN_DIR [RUN_DIR ...] [--offsets -0.2 -0.1 0 0.1 0.2]
        [--split valid|test] [--group-seeds] [--markdown-section NAME --write FILE]

For each run (restored on CPU, trainer/restore.py) and each beta of `--offsets`, the split is
ranked by score + beta * log(1 + n_i) (trainer/ranking.py; n_i = the item's training
interactions; training items masked, valid items not masked for test: the primary protocol) and
its Recall@20 / NDCG@20 printed; beta replaces the run's own eval.popularity_offset. With
`--group-seeds`, the mean over each seed group; the best beta of each row by Recall@20 is marked.

What it measures, and what not: the checkpoint was selected at the run's own offset, so a run
trained with another beta can stop at another epoch; the sweep points at a candidate beta, and a
run trained with it (`--eval.popularity_offset=beta`) is the test. Choose on valid; read test for
reporting only (../shared/docs/anchors.md).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np
import torch

from data_loaders.format import Split
from trainer.evaluate import evaluate
from trainer.hit_ranks import SPLITS
from trainer.ranking import popularity_column, with_popularity_offset
from trainer.report import add_section_args, check_section_args, run_name, by_seed_group, print_and_write
from trainer.restore import RestoreError, restore_run

DEFAULT_OFFSETS = (-0.3, -0.2, -0.1, -0.05, 0.0, 0.05, 0.1, 0.2)
METRICS = ("recall@20", "ndcg@20")


@dataclass
class OffsetSweep:
    """One run's (or seed group's mean) metrics per offset: values[metric][j] at offsets[j]."""

    name: str
    offsets: tuple[float, ...]
    values: dict[str, np.ndarray]


@torch.no_grad()
def sweep_run(run_dir: str, split: str, offsets: tuple[float, ...]) -> OffsetSweep:
    run = restore_run(run_dir.rstrip("/"))
    train = run.splits[Split.TRAIN]
    user_emb, item_emb = run.model.final_embeddings()
    popularity = popularity_column(train)
    values = {m: np.zeros(len(offsets)) for m in METRICS}
    for j, beta in enumerate(offsets):
        u, i = with_popularity_offset(user_emb, item_emb, popularity, beta)
        result = evaluate(u, i, run.splits[SPLITS[split]], [train], ks=(20,), user_chunk=run.cfg.eval.user_chunk,
                          item_chunk=run.cfg.eval.item_chunk, rank=0, world_size=1, reduce=False)
        for m in METRICS:
            values[m][j] = result.metrics[m]
    return OffsetSweep(run_name(run_dir), offsets, values)


def group(results: list[OffsetSweep]) -> list[OffsetSweep]:
    """Seed groups (names equal once `_s<seed>` is dropped): the mean of each value over the group."""
    return [OffsetSweep(f"{g} (n={len(rs)})", rs[0].offsets, {m: np.mean([r.values[m] for r in rs], axis=0) for m in METRICS})
            for g, rs in by_seed_group(results).items()]


def render(results: list[OffsetSweep], split: str) -> str:
    offsets = results[0].offsets
    lines = [f"**{split}** Recall@20 / NDCG@20 ranked by score + beta * log(1 + n_i), at each run's best checkpoint "
             "(`python -m trainer.popularity_offset`); **bold**: the row's best beta by Recall@20.", "",
             "| run | " + " | ".join(f"beta {b:+g}" for b in offsets) + " |", "|" + "---|" * (len(offsets) + 1)]
    for r in results:
        best = int(np.argmax(r.values["recall@20"]))
        cells = []
        for j in range(len(offsets)):
            cell = f"{r.values['recall@20'][j]:.4f} / {r.values['ndcg@20'][j]:.4f}"
            cells.append(f"**{cell}**" if j == best else cell)
        lines.append("| " + " | ".join([r.name, *cells]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--offsets", nargs="+", type=float, default=list(DEFAULT_OFFSETS),
                        help="the betas to rank with (default %(default)s)")
    parser.add_argument("--split", choices=sorted(SPLITS), default="valid")
    parser.add_argument("--group-seeds", action="store_true", help="one row per seed group (mean over seeds)")
    add_section_args(parser)
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    offsets = tuple(args.offsets)
    if len(set(offsets)) != len(offsets) or not all(np.isfinite(offsets)):
        parser.error(f"--offsets must be distinct finite numbers, got {list(offsets)}")
    try:
        results = [sweep_run(d, args.split, offsets) for d in args.runs]
    except (RestoreError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = render(group(results) if args.group_seeds else results, args.split)
    print_and_write(args, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

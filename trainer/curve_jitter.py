"""How much a run's validation curve jumps from one evaluation to the next.

    python -m trainer.curve_jitter RUN_DIR [RUN_DIR ...] [--metric valid/recall@20]
        [--from-epoch 25] [--to-epoch 75] [--group-seeds] [--markdown-section NAME --write FILE]

Early stopping keeps the epoch with the best valid score. When the curve jumps by more than the
differences between settings, that best epoch is partly a lucky draw: valid at the chosen epoch
overstates the model and test at that epoch falls short of it. This tool reads each run's
`metrics.json` history and reports, over the evaluations in [from, to] (epochs, inclusive), the
mean absolute change of the metric between consecutive evaluations, its largest change, and the
best value; with `--group-seeds` the mean of each over a seed group. No model is restored.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from trainer.report import add_section_args, check_section_args, load_run, run_name, by_seed_group, print_and_write


@dataclass
class Jitter:
    """One run's (or seed group's mean) curve statistics over the epoch window."""

    name: str
    evaluations: float   # evaluations inside the window
    mean_step: float     # mean |metric(e_k+1) - metric(e_k)| over consecutive evaluations
    max_step: float      # largest such change
    best: float          # best value of the metric over the whole run


def curve_jitter(history: list[dict], metric: str, first: int, last: int, name: str) -> Jitter:
    """`Jitter` of `metric` over the history entries whose epoch is in [first, last]."""
    points = [(h["epoch"], h[metric]) for h in history if metric in h]
    if not points:
        raise ValueError(f"{name}: no {metric!r} in its history (keys e.g. {sorted(history[0])[:6] if history else []})")
    window = np.array([v for e, v in points if first <= e <= last], dtype=float)
    if window.size < 2:
        raise ValueError(f"{name}: fewer than 2 evaluations of {metric} between epochs {first} and {last}")
    steps = np.abs(np.diff(window))
    return Jitter(name, float(window.size), float(steps.mean()), float(steps.max()), max(v for _, v in points))


def group(results: list[Jitter]) -> list[Jitter]:
    """Seed groups (names equal once `_s<seed>` is dropped): the mean of each column."""
    return [Jitter(f"{g} (n={len(rs)})", *(float(np.mean([getattr(r, f) for r in rs]))
                                           for f in ("evaluations", "mean_step", "max_step", "best")))
            for g, rs in by_seed_group(results).items()]


def render(results: list[Jitter], metric: str, first: int, last: int) -> str:
    lines = [f"Change of **{metric}** between consecutive evaluations, epochs {first}-{last} "
             f"(`python -m trainer.curve_jitter`); best: over the whole run.", "",
             "| run | evaluations | mean abs change | largest change | best |", "|---|---|---|---|---|"]
    lines += [f"| {r.name} | {r.evaluations:.3g} | {r.mean_step:.4f} | {r.max_step:.4f} | {r.best:.4f} |" for r in results]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--metric", default="valid/recall@20", help="history key (default %(default)s)")
    parser.add_argument("--from-epoch", type=int, default=25, help="first epoch of the window (default %(default)s)")
    parser.add_argument("--to-epoch", type=int, default=75, help="last epoch of the window (default %(default)s)")
    parser.add_argument("--group-seeds", action="store_true", help="one row per seed group (mean over seeds)")
    add_section_args(parser)
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    if args.from_epoch > args.to_epoch:
        parser.error(f"--from-epoch {args.from_epoch} is after --to-epoch {args.to_epoch}")
    try:
        results = [curve_jitter(load_run(d).get("history", []), args.metric, args.from_epoch, args.to_epoch,
                                run_name(d)) for d in args.runs]
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = render(group(results) if args.group_seeds else results, args.metric, args.from_epoch, args.to_epoch)
    print_and_write(args, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

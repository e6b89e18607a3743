"""How much a run's validation curve jumps from one evaluation to the next.

    python -m trainer.curve_jitter RUN_DIR [RUN_DIR ...] [--metric valid/recall@20]
        [--from-epoch 25] [--to-epoch 75] [--with test_curve/recall@20] [--group-seeds]
        [--markdown-section NAME --write FILE]

Early stopping keeps the epoch with the best valid score. When the curve jumps by more than the
differences between settings, that best epoch is partly a lucky draw: valid at the chosen epoch
overstates the model and test at that epoch falls short of it. This tool reads each run's
`metrics.json` history and reports, over the evaluations in [from, to] (epochs, inclusive), the
mean absolute change of the metric between consecutive evaluations, its largest change, and the
best value; with `--group-seeds` the mean of each over a seed group. No model is restored.

`--with KEY` (e.g. `test_curve/recall@20`, logged with `eval.test_curve`) adds the correlation,
over the window, between the metric's changes and KEY's changes from one evaluation to the next.
Near 1: the jumps are the model's own (the two held-out sets see the same change); near 0: they are
sampling noise of one set's users, which an epoch chosen on it then carries as optimism.
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
    change_corr: float | None = None  # corr of its changes with --with KEY's changes (None: not asked)


def curve_jitter(history: list[dict], metric: str, first: int, last: int, name: str,
                 paired: str | None = None) -> Jitter:
    """`Jitter` of `metric` over the history entries whose epoch is in [first, last]; with `paired`,
    also the correlation of its changes with `paired`'s over the same evaluations."""
    points = [(h["epoch"], h[metric]) for h in history if metric in h]
    if not points:
        raise ValueError(f"{name}: no {metric!r} in its history (keys e.g. {sorted(history[0])[:6] if history else []})")
    window = np.array([v for e, v in points if first <= e <= last], dtype=float)
    if window.size < 2:
        raise ValueError(f"{name}: fewer than 2 evaluations of {metric} between epochs {first} and {last}")
    steps = np.abs(np.diff(window))
    corr = None
    if paired is not None:
        rows = [h for h in history if metric in h and first <= h["epoch"] <= last]
        missing = [h["epoch"] for h in rows if paired not in h]
        if missing:
            raise ValueError(f"{name}: no {paired!r} at epoch {missing[0]}, where {metric} is logged "
                             f"(a test curve needs eval.test_curve: true)")
        changes = np.diff(np.array([(h[metric], h[paired]) for h in rows], dtype=float), axis=0)
        if len(changes) < 2 or changes.std(axis=0).min() == 0:
            raise ValueError(f"{name}: too few or constant changes between epochs {first} and {last} to correlate")
        corr = float(np.corrcoef(changes[:, 0], changes[:, 1])[0, 1])
    return Jitter(name, float(window.size), float(steps.mean()), float(steps.max()), max(v for _, v in points), corr)


def group(results: list[Jitter]) -> list[Jitter]:
    """Seed groups (names equal once `_s<seed>` is dropped): the mean of each column."""
    out = []
    for g, rs in by_seed_group(results).items():
        means = [float(np.mean([getattr(r, f) for r in rs])) for f in ("evaluations", "mean_step", "max_step", "best")]
        corr = None if rs[0].change_corr is None else float(np.mean([r.change_corr for r in rs]))
        out.append(Jitter(f"{g} (n={len(rs)})", *means, corr))
    return out


def render(results: list[Jitter], metric: str, first: int, last: int, paired: str | None = None) -> str:
    extra = f" | corr of changes with {paired}" if paired else ""
    lines = [f"Change of **{metric}** between consecutive evaluations, epochs {first}-{last} "
             f"(`python -m trainer.curve_jitter`); best: over the whole run.", "",
             f"| run | evaluations | mean abs change | largest change | best{extra} |",
             "|---|---|---|---|---|" + ("---|" if paired else "")]
    lines += [f"| {r.name} | {r.evaluations:.3g} | {r.mean_step:.4f} | {r.max_step:.4f} | {r.best:.4f}"
              + (f" | {r.change_corr:.2f}" if paired else "") + " |" for r in results]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--metric", default="valid/recall@20", help="history key (default %(default)s)")
    parser.add_argument("--from-epoch", type=int, default=25, help="first epoch of the window (default %(default)s)")
    parser.add_argument("--to-epoch", type=int, default=75, help="last epoch of the window (default %(default)s)")
    parser.add_argument("--with", dest="paired", metavar="KEY",
                        help="also the correlation of the metric's changes with KEY's (e.g. test_curve/recall@20)")
    parser.add_argument("--group-seeds", action="store_true", help="one row per seed group (mean over seeds)")
    add_section_args(parser)
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    if args.from_epoch > args.to_epoch:
        parser.error(f"--from-epoch {args.from_epoch} is after --to-epoch {args.to_epoch}")
    try:
        results = [curve_jitter(load_run(d).get("history", []), args.metric, args.from_epoch, args.to_epoch,
                                run_name(d), args.paired) for d in args.runs]
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    text = render(group(results) if args.group_seeds else results, args.metric, args.from_epoch, args.to_epoch,
                  args.paired)
    print_and_write(args, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

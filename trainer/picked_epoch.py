"""A run's test figure under both selection protocols of published results: valid-selected and test-picked.

    python -m trainer.picked_epoch RUN_DIR [RUN_DIR ...] [--metric recall@20] [--also ndcg@20]
        [--group-seeds] [--markdown-section NAME --write FILE]

V (the protocol here, and the issue's): test at the epoch with the best valid `--metric`, as every
run reports. T: the epoch with the best *test* `--metric`, which some published TikTok figures
report (docs/RESULTS.md marks them T). T is never a way to choose anything; it answers "what would
this run print under the other protocol", so a T figure is compared with a T figure. It needs a run
trained with `eval.test_curve: true` (test logged at every evaluation as `test_curve/<metric>`).
At equal scores the earlier epoch is taken, under both protocols. No model is restored.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import numpy as np

from trainer.report import add_section_args, by_seed_group, check_section_args, load_run, print_and_write, run_name


@dataclass
class Picked:
    """One run's (or seed group's mean) figures under V and T; `*_std` are 0 for one run."""

    name: str
    v_epoch: float
    v: float        # test --metric at the best-valid epoch
    v_also: float   # test --also there
    t_epoch: float
    t: float        # best test --metric over the evaluations
    t_also: float   # test --also at that epoch
    v_std: float = 0.0
    t_std: float = 0.0
    n: int = 1


def picked_figures(metrics: dict, metric: str, also: str, name: str) -> Picked:
    """`Picked` of one run's metrics.json. Refuses a run without a test curve, and one whose logged
    curve disagrees with its reported best-valid test figure (the two must be the same evaluation)."""
    history = [h for h in metrics.get("history", []) if f"test_curve/{metric}" in h]
    if not history:
        raise ValueError(f"{name}: no 'test_curve/{metric}' in its history (train it with --eval.test_curve=true)")
    if f"test_curve/{also}" not in history[0]:
        raise ValueError(f"{name}: no 'test_curve/{also}' in its history")
    best_epoch = metrics.get("best_epoch")
    at_best = [h for h in history if h["epoch"] == best_epoch]
    if not at_best:
        raise ValueError(f"{name}: its best epoch {best_epoch!r} has no logged test curve point")
    v_row, reported = at_best[0], metrics.get("best_test", {}).get(metric)
    if reported is None or not math.isclose(v_row[f"test_curve/{metric}"], reported, rel_tol=0, abs_tol=1e-12):
        raise ValueError(f"{name}: test_curve/{metric} at its best epoch {best_epoch} is "
                         f"{v_row[f'test_curve/{metric}']!r} but best_test.{metric} is {reported!r}")
    t_row = max(history, key=lambda h: (h[f"test_curve/{metric}"], -h["epoch"]))  # ties: the earlier epoch
    return Picked(name, float(best_epoch), v_row[f"test_curve/{metric}"], v_row[f"test_curve/{also}"],
                  float(t_row["epoch"]), t_row[f"test_curve/{metric}"], t_row[f"test_curve/{also}"])


def group(results: list[Picked]) -> list[Picked]:
    """Seed groups (names equal once `_s<seed>` is dropped): means, and the std of V and T over seeds."""
    out = []
    for g, rs in by_seed_group(results).items():
        mean = {f: float(np.mean([getattr(r, f) for r in rs])) for f in ("v_epoch", "v", "v_also", "t_epoch", "t", "t_also")}
        std = {f"{f}_std": float(np.std([getattr(r, f) for r in rs], ddof=1)) if len(rs) > 1 else 0.0 for f in ("v", "t")}
        out.append(Picked(f"{g} (n={len(rs)})", **mean, **std, n=len(rs)))
    return out


def render(results: list[Picked], metric: str, also: str) -> str:
    def pm(value: float, std: float, n: int) -> str:
        return f"{value:.4f} ± {std:.4f}" if n > 1 else f"{value:.4f}"

    lines = [f"Test **{metric}** (and {also} at the same epoch) at the best-valid epoch (V, the protocol here) and at "
             f"the best-test epoch (T, picked on test: only for reading published T figures) "
             f"(`python -m trainer.picked_epoch`; epochs and figures are means over a group's seeds).", "",
             f"| run | V epoch | V {metric} | V {also} | T epoch | T {metric} | T {also} | T - V |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.name} | {r.v_epoch:.3g} | {pm(r.v, r.v_std, r.n)} | {r.v_also:.4f} | {r.t_epoch:.3g} | "
              f"{pm(r.t, r.t_std, r.n)} | {r.t_also:.4f} | {r.t - r.v:+.4f} |" for r in results]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--metric", default="recall@20", help="the metric that picks the epoch (default %(default)s)")
    parser.add_argument("--also", default="ndcg@20", help="a second metric read at the same epochs (default %(default)s)")
    parser.add_argument("--group-seeds", action="store_true", help="one row per seed group (mean over seeds)")
    add_section_args(parser)
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    try:
        results = [picked_figures(load_run(d), args.metric, args.also, run_name(d)) for d in args.runs]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_and_write(args, render(group(results) if args.group_seeds else results, args.metric, args.also))
    return 0


if __name__ == "__main__":
    sys.exit(main())

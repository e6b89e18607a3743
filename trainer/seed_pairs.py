"""Two settings compared seed by seed: how large the per-seed difference is, and how many seeds a margin needs.

    python -m trainer.seed_pairs --a RUN_DIR [RUN_DIR ...] --b RUN_DIR [RUN_DIR ...]
        [--split valid] [--metric recall@20] [--margin 0.002] [--markdown-section NAME --write FILE]

`trainer.compare` asks whether A beats B over *users* (each side's seeds averaged). This asks the
question a tuning rule faces: two settings trained on the same seeds (same initial rows, same
batches) differ by a seed-dependent amount, and a rule with a margin only reads a setting, not a
lucky set of seeds, when that amount's spread is small against the margin. For each seed present
on both sides it reads the metric of the best-valid epoch (`best_valid` or `best_test` of each
run's metrics.json; no model is restored) and reports A, B and A - B, then over the seeds the mean
difference, its sample standard deviation, a paired t-test (trainer.compare.paired_t, one-sided, H1:
A > B) and the seeds per side that a true difference of `--margin` needs to reach a one-sided 5%
level with 80% power, ((z_0.95 + z_0.80) sd / margin)^2, the usual normal approximation.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import numpy as np
from scipy import stats

from trainer.compare import paired_t
from trainer.report import add_section_args, check_section_args, load_run, print_and_write, run_name, seed_group

Z_ALPHA, Z_POWER = float(stats.norm.ppf(0.95)), float(stats.norm.ppf(0.80))   # one-sided 5% level, 80% power


@dataclass
class SeedPairs:
    """Per-seed values of one metric for sides A and B, matched by seed."""

    name_a: str
    name_b: str
    seeds: list[int]
    a: list[float]
    b: list[float]

    @property
    def diffs(self) -> np.ndarray:
        return np.asarray(self.a) - np.asarray(self.b)


def by_seed(run_dirs: list[str], key: str, metric: str) -> dict[int, float]:
    """{seed: metric of the run's best-valid epoch} for one side; a seed twice on one side is an error."""
    out: dict[int, float] = {}
    for d in run_dirs:
        m = load_run(d)
        seed = ((m.get("config") or {}).get("run") or {}).get("seed")
        if seed is None:
            raise ValueError(f"{d}/metrics.json: no config.run.seed (not a trainer run's metrics?)")
        seed = int(seed)
        if seed in out:
            raise ValueError(f"{d}: seed {seed} appears twice on one side")
        value = (m.get(key) or {}).get(metric)
        if value is None:
            raise ValueError(f"{d}/metrics.json: no {key}.{metric} (metrics there: {sorted(m.get(key) or {})[:8]})")
        out[seed] = float(value)
    return out


def pair(a_dirs: list[str], b_dirs: list[str], split: str, metric: str) -> SeedPairs:
    """A's and B's values on the seeds both sides have; every seed must be on both sides."""
    key = f"best_{split}"
    a, b = by_seed(a_dirs, key, metric), by_seed(b_dirs, key, metric)
    if set(a) != set(b):
        raise ValueError(f"the sides' seeds differ: only in A {sorted(set(a) - set(b))}, only in B {sorted(set(b) - set(a))}")
    if len(a) < 2:
        raise ValueError(f"need at least 2 seeds on each side, got {len(a)}")
    seeds = sorted(a)
    return SeedPairs(seed_group(run_name(a_dirs[0])), seed_group(run_name(b_dirs[0])), seeds,
                     [a[s] for s in seeds], [b[s] for s in seeds])


def seeds_needed(sd: float, margin: float) -> int:
    """Seeds per side for a true difference `margin` at a one-sided 5% level with 80% power (normal approximation)."""
    return math.ceil(((Z_ALPHA + Z_POWER) * sd / margin) ** 2)


def render(p: SeedPairs, split: str, metric: str, margin: float) -> str:
    d = p.diffs
    sd = float(d.std(ddof=1))
    # The same difference on every seed leaves the t statistic undefined (sd 0): paired_t then
    # returns a convention, not a test, so no p is printed.
    p_text = (f"{paired_t(np.asarray(p.a), np.asarray(p.b))[2]:.3g}" if not np.all(d == d[0])
              else "n/a (the same difference on every seed)")
    lines = [f"**{split} {metric}** at each run's best-valid epoch, A = {p.name_a}, B = {p.name_b}, matched by seed "
             f"(`python -m trainer.seed_pairs`).", "",
             "| seed | A | B | A - B |", "|---|---|---|---|"]
    lines += [f"| {s} | {x:.4f} | {y:.4f} | {x - y:+.4f} |" for s, x, y in zip(p.seeds, p.a, p.b)]
    lines += ["", f"Over {len(p.seeds)} seeds: mean A - B **{d.mean():+.4f}**, sd {sd:.4f}, A higher on "
              f"{int((d > 0).sum())} of {len(p.seeds)}; paired t-test one-sided p = {p_text}. A true difference "
              f"of {margin:g} needs about **{max(2, seeds_needed(sd, margin))} seeds** per side at this sd (one-sided 5%, "
              "power 80%)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", nargs="+", required=True, metavar="RUN_DIR", help="side A's runs, one per seed")
    parser.add_argument("--b", nargs="+", required=True, metavar="RUN_DIR", help="side B's runs, one per seed")
    parser.add_argument("--split", choices=("valid", "test"), default="valid", help="default %(default)s")
    parser.add_argument("--metric", default="recall@20", help="default %(default)s")
    parser.add_argument("--margin", type=float, default=0.002, help="difference to plan seeds for (default %(default)s)")
    add_section_args(parser)
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    if not args.margin > 0:
        parser.error(f"--margin must be > 0, got {args.margin}")
    try:
        pairs = pair(args.a, args.b, args.split, args.metric)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print_and_write(args, render(pairs, args.split, args.metric, args.margin))
    return 0


if __name__ == "__main__":
    sys.exit(main())

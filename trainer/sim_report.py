"""The simulator checks' table (issue 3, part 4): `python -m trainer.sim_report RUN_DIR ...`.

Groups the run directories by name without their `_s<seed>` suffix (sim_full_s0, sim_full_s1 ->
sim_full) and prints, per group, the split that selected its epochs (`eval.select_split`) and Recall@20
on the simulator's `unbiased_test` and `unbiased_valid` splits, on `valid` and on `test` (each run's
figures at its best epoch, metrics.json) as mean ± sample std over seeds, and,
for runs that have a `causal_checks.json` (written by `python -m trainer.causal_checks --json`),
the NMI of the codes with the planted confounders and the precision / recall of the pruning of
noise edges next to chance. With `--full GROUP --ablated GROUP --baseline GROUP` it adds the
verdicts of the checks:

  (a) unbiased_test R@20 of the full model >= (1 + --min-gain) x that of the model with back-door
      and front-door off (seed means), and > that of the baseline (LightGCN);
  (b) NMI of the coarse codes with the true confounder >= --min-nmi (seed mean);
  (c) pruning precision above chance (the noise fraction of the training edges) (seed means).

`--markdown-section NAME --write FILE` replaces the block between `<!-- begin NAME -->` and
`<!-- end NAME -->` in FILE (trainer/report.py `replace_section`), appending it under `## --heading`
when absent. experiments/simulator_checks.sh runs all of this.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import fsspec

from trainer.causal_checks import RESULT_FILE
from trainer.report import add_section_args, check_section_args, load_run, run_name, seed_group, write_section

SOURCE_KEYS = ("num_users", "num_items", "num_categories", "styles_per_category", "noise_rate", "confounder_weight",
               "content_weight", "popularity_exponent", "promotion_boost", "promoted_fraction",
               "interactions_per_user", "unbiased_per_user", "seed")


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """(mean, sample std with n - 1; None for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5


def fmt(values: list[float] | None) -> str:
    if not values:
        return "—"
    mean, std = mean_std(values)
    return f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"


def load_checks(run_dir: str) -> dict[str, Any] | None:
    path = f"{run_dir.rstrip('/')}/{RESULT_FILE}"
    try:
        with fsspec.open(path, "r") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def collect(run_dirs: list[str]) -> dict[str, dict[str, Any]]:
    """Per seed group, in order of first appearance: model, seeds and the per-seed figures."""
    groups: dict[str, dict[str, Any]] = {}
    for run_dir in run_dirs:
        m = load_run(run_dir)
        name = seed_group(run_name(run_dir))
        g = groups.setdefault(name, {"runs": [], "models": set(), "data": set(), "seeds": [], "unbiased": [],
                                     "valid": [], "unbiased_valid": [], "select": set(), "test": [], "checks": []})
        g["runs"].append(run_dir)
        g["models"].add(m["config"]["model"]["name"])
        g["data"].add(m["config"]["data"]["url"])
        g["seeds"].append(m["config"]["run"]["seed"])
        if not m.get("best_unbiased_test"):
            raise SystemExit(f"error: {run_dir}/metrics.json has no best_unbiased_test: was it trained on a simulator "
                             "dataset by a trainer that evaluates the unbiased_test split?")
        g["unbiased"].append(m["best_unbiased_test"]["recall@20"])
        g["test"].append(m["best_test"]["recall@20"])
        g["valid"].append(m["best_valid"]["recall@20"])
        if m.get("best_unbiased_valid"):
            g["unbiased_valid"].append(m["best_unbiased_valid"]["recall@20"])
        g["select"].add(m["config"].get("eval", {}).get("select_split", "valid"))
        g["checks"].append(load_checks(run_dir))
    for name, g in groups.items():
        if len(g["models"]) > 1 or len(g["data"]) > 1 or len(g["select"]) > 1:
            raise SystemExit(f"error: group {name} mixes models {sorted(g['models'])} / data {sorted(g['data'])} "
                             f"/ eval.select_split {sorted(g['select'])}")
        if 0 < len(g["unbiased_valid"]) < len(g["runs"]):
            g["unbiased_valid"] = []  # not every seed has it: no mean over a subset
        if len(set(g["seeds"])) < len(g["seeds"]):
            raise SystemExit(f"error: group {name} has the same seed twice: {g['seeds']}")
    return groups


def _check_values(g: dict[str, Any], *path: str) -> list[float] | None:
    """A figure of every run's causal_checks.json (None unless all runs have it)."""
    out = []
    for checks in g["checks"]:
        value: Any = checks
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, (int, float)):
            return None
        out.append(float(value))
    return out


def table(groups: dict[str, dict[str, Any]]) -> str:
    head = ("| variant | model | seeds | selected on | unbiased_test R@20 | unbiased_valid R@20 | valid R@20 | test R@20 | NMI coarse | NMI (coarse, fine) pair "
            "| pruned fraction | pruning precision | pruning recall | chance precision (noise fraction) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name, g in groups.items():
        cells = [name, next(iter(g["models"])), ", ".join(map(str, g["seeds"])), next(iter(g["select"])), fmt(g["unbiased"]),
                 fmt(g["unbiased_valid"]), fmt(g["valid"]), fmt(g["test"]),
                 fmt(_check_values(g, "codes", "nmi_coarse")), fmt(_check_values(g, "codes", "nmi_pair")),
                 fmt(_check_values(g, "pruning", "pruned_fraction")), fmt(_check_values(g, "pruning", "precision")),
                 fmt(_check_values(g, "pruning", "recall")), fmt(_check_values(g, "pruning", "noise_fraction"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Mean ± sample standard deviation (n - 1) over seeds; R@20 at each run's best epoch on the split "
              "it was selected on (`eval.select_split`); unbiased_valid and unbiased_test mask the user's train, valid and test items. Chance: pruning edges at random has "
              "precision = the noise fraction and recall = the pruned fraction."]
    return "\n".join(lines)


def verdicts(groups: dict[str, dict[str, Any]], full: str, ablated: str | None, baseline: str | None,
             min_gain: float = 0.10, min_nmi: float = 0.5, also: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The checks (a)-(c) as rows {check, value, target, passed}; `also`: groups whose unbiased_test
    gain is reported without a target (passed None), to show which part of the model carries (a)."""
    for name in (full, ablated, baseline, *also):
        if name is not None and name not in groups:
            raise SystemExit(f"error: no runs of group {name!r} (have {sorted(groups)})")
    g = groups[full]
    unbiased = mean_std(g["unbiased"])[0]

    def gain_over(name: str) -> float:  # relative unbiased_test R@20 gain of `full` over group `name`
        other = mean_std(groups[name]["unbiased"])[0]
        return unbiased / other - 1 if other > 0 else float("inf")

    out = []
    if ablated is not None:
        gain = gain_over(ablated)
        out.append({"check": f"(a) unbiased_test R@20 gain of {full} over {ablated}", "value": gain,
                    "target": f">= {min_gain:+.0%}", "passed": gain >= min_gain})
    if baseline is not None:
        gain = gain_over(baseline)
        out.append({"check": f"(a) unbiased_test R@20 gain of {full} over {baseline}", "value": gain,
                    "target": "> +0%", "passed": gain > 0})
    for name in also:
        out.append({"check": f"unbiased_test R@20 gain of {full} over {name} (no target)", "value": gain_over(name),
                    "target": "—", "passed": None})
    nmi = _check_values(g, "codes", "nmi_coarse")
    if nmi is not None:
        value = mean_std(nmi)[0]
        out.append({"check": "(b) NMI of the coarse codes with the true confounder", "value": value,
                    "target": f">= {min_nmi}", "passed": value >= min_nmi})
    precision = _check_values(g, "pruning", "precision")
    chance = _check_values(g, "pruning", "noise_fraction")
    if precision is not None and chance is not None:
        p, c = mean_std(precision)[0], mean_std(chance)[0]
        recall = _check_values(g, "pruning", "recall")
        pruned = _check_values(g, "pruning", "pruned_fraction")
        out.append({"check": "(c) pruning precision (pruned ⇒ noise) vs chance (noise fraction)", "value": p,
                    "target": f"> {c:.4f}", "passed": p > c})
        if recall is not None and pruned is not None:
            r, q = mean_std(recall)[0], mean_std(pruned)[0]
            out.append({"check": "(c) pruning recall (noise ⇒ pruned) vs chance (pruned fraction)", "value": r,
                        "target": f"> {q:.4f}", "passed": r > q})
    return out


def render_verdicts(rows: list[dict[str, Any]]) -> str:
    lines = ["| check | value | target | passed |", "|---|---|---|---|"]
    for r in rows:
        value = f"{r['value']:+.1%}" if "gain" in r["check"] else f"{r['value']:.4f}"
        passed = "—" if r["passed"] is None else "yes" if r["passed"] else "**no**"
        lines.append(f"| {r['check']} | {value} | {r['target']} | {passed} |")
    return "\n".join(lines)


def dataset_line(groups: dict[str, dict[str, Any]]) -> str:
    """The simulator parameters of the runs' dataset (its manifest's `source`), when readable."""
    urls = sorted({u for g in groups.values() for u in g["data"]})
    if len(urls) != 1:
        return f"Datasets: {', '.join(urls)}."
    try:
        with fsspec.open(f"{urls[0].rstrip('/')}/manifest.json", "r") as f:
            manifest = json.load(f)
    except (FileNotFoundError, OSError, json.JSONDecodeError):
        return f"Dataset: `{urls[0]}` (manifest not readable here)."
    source = manifest.get("source", {})
    params = ", ".join(f"{k}={source[k]}" for k in SOURCE_KEYS if k in source)
    splits = ", ".join(f"{k} {v:,}" for k, v in manifest.get("splits", {}).items())
    return f"Dataset: `{urls[0]}` ({source.get('importer', '?')}: {params}); rows: {splits}."


def render(groups: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> str:
    runs = ", ".join(f"{name} ({len(g['runs'])} runs)" for name, g in groups.items())
    parts = [dataset_line(groups), "",
             f"Runs: {runs}. Made by `bash experiments/simulator_checks.sh` (checks: `python -m trainer.causal_checks`, "
             "table: `python -m trainer.sim_report`).", "", table(groups)]
    if rows:
        parts += ["", render_verdicts(rows)]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--full", metavar="GROUP", help="the full causal model's group (e.g. sim_full): verdicts")
    parser.add_argument("--ablated", metavar="GROUP", help="the group with back-door and front-door off")
    parser.add_argument("--baseline", metavar="GROUP", help="the baseline's group (e.g. sim_lightgcn)")
    parser.add_argument("--also", nargs="+", default=[], metavar="GROUP",
                        help="more groups to report the full model's unbiased_test gain over, without a target")
    parser.add_argument("--min-gain", type=float, default=0.10, help="(a): relative unbiased R@20 gain over --ablated")
    parser.add_argument("--min-nmi", type=float, default=0.5, help="(b): NMI of the coarse codes")
    parser.add_argument("--json", metavar="OUT", help="also write the groups' figures and the verdicts as JSON")
    add_section_args(parser)
    parser.add_argument("--heading", help="with --write: the '## ' heading put above the section when it is new")
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    groups = collect(args.runs)
    rows = verdicts(groups, args.full, args.ablated, args.baseline, args.min_gain, args.min_nmi,
                    args.also) if args.full else []
    markdown = render(groups, rows)
    print(markdown)
    if args.json:
        payload = {"groups": {name: {k: (sorted(v) if isinstance(v, set) else v) for k, v in g.items()}
                              for name, g in groups.items()}, "verdicts": rows}
        with fsspec.open(args.json, "w") as f:
            json.dump(payload, f, indent=1)
    if args.write:
        write_section(args.write, args.markdown_section, markdown, heading=args.heading)
        print(f"updated section {args.markdown_section} of {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

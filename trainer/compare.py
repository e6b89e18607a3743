"""Is A better than B? A paired significance test over users between two groups of runs.

    python -m trainer.compare --a RUN_A1 [RUN_A2 ...] --b RUN_B1 [RUN_B2 ...] [--b RUN_C1 ...] \\
        [--metric recall@20 [ndcg@20 ...]] [--split test|valid] [--mask-valid] [--json OUT] \\
        [--markdown-section NAME --write FILE]

The test the evaluation protocol asks for (../shared/docs/anchors.md: "a paired bootstrap over users
(or a paired t-test) for 'A beats B' claims"). Each side is a list of run directories, usually one
model's seeds; `--b` may be given several times (A against each B, e.g. the causal model against
every baseline).

For every run, the model of its best checkpoint is rebuilt on CPU (trainer/restore.py) and its
final embeddings are scored by the evaluator itself (trainer.evaluate.evaluate with
`per_user=True`: the same top-k and metric code as training, one process): one value per user
with a held-out item in the split, training items masked, valid items NOT masked for test (the
primary protocol; `--mask-valid` gives the stricter variant). The mean of these values must
reproduce the figure the run recorded in metrics.json (`best_test`, `best_test_valid_masked` or
`best_valid`) to `--tolerance` (1e-6) for every metric, and the user count exactly: the tool
prints the check and stops (exit 2) on a mismatch unless `--allow-mismatch`.

Each user's metric is averaged over the seeds of a side (a_u, b_u); the users are the pairs:
- mean A, mean B and the mean difference d = mean_u (a_u - b_u);
- paired t-test (scipy.stats.ttest_rel): two-sided p and one-sided p for H1 "A > B";
- paired bootstrap: `--resamples` (10,000) resamples of the users with replacement (numpy
  generator seeded by `--seed`); 95% percentile CI of d; p-values by the shift method, i.e. how
  often a resampled difference deviates from d by at least d itself:
  two-sided (1 + #{|d*_b - d| >= |d|}) / (B + 1), one-sided (A > B) (1 + #{d*_b - d >= d}) / (B + 1).
  Comparing a run with itself gives d = 0 and both p = 1 (the t-test's 0/0 is reported as t = 0,
  two-sided p = 1, one-sided p = 0.5).
Plus each run's mean (per seed) and mean ± sample std (n - 1) over a side's seeds.

Per-user vectors are cached next to the run as `per_user_<split>.npz` (`per_user_test_valid_masked.npz`
with `--mask-valid`), written under a temporary name and renamed; a cache is used only when it was
computed from the same checkpoint path (symlinks resolved), the same train_state.json and holds the
metrics asked for, so repeated comparisons restore no model; the consistency check runs on cached
values too. `--no-cache` recomputes (and rewrites) it.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import posixpath
import sys
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

import fsspec
import numpy as np
import torch

from data_loaders.format import Split
from trainer.checkpoint import STATE_FILE
from trainer.evaluate import FAMILIES, evaluate
from trainer.report import add_section_args, check_section_args, run_name, seed_group, write_section
from trainer.restore import RestoreError, find_checkpoint, read_metrics, restore_run
from trainer.ranking import ranking_embeddings

SPLITS = {"test": Split.TEST, "valid": Split.VALID}
CACHE_VERSION = 1


class CompareError(ValueError):
    """Runs that cannot be compared (different users, a missing metric, a failed consistency check)."""


def recorded_key(split: str, mask_valid: bool) -> str:
    """The metrics.json entry that holds the run's own figures for this split."""
    if split == "valid":
        if mask_valid:
            raise CompareError("--mask-valid applies to the test split only")
        return "best_valid"
    return "best_test_valid_masked" if mask_valid else "best_test"


def cache_name(split: str, mask_valid: bool) -> str:
    return f"per_user_{split}{'_valid_masked' if mask_valid else ''}.npz"


def parse_metric(name: str) -> tuple[str, int]:
    family, _, k = name.partition("@")
    if family not in FAMILIES or not k.isdigit() or int(k) < 1:
        raise CompareError(f"metric {name!r}: expected <family>@<K> with family one of {list(FAMILIES)}, e.g. recall@20")
    return family, int(k)


@dataclass
class PerUser:
    """One run's per-user metric values on a split (users with a held-out item, ascending id)."""

    run_dir: str
    model: str
    seed: int
    checkpoint: str
    users: np.ndarray
    values: dict[str, np.ndarray]
    recorded: dict[str, Any]     # metrics.json's figures for this split (means + num_users)
    cached: bool                 # read from per_user_<split>.npz rather than recomputed
    check: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return run_name(self.run_dir)


def _canonical(path: str) -> str:
    """A local path with symlinks resolved (a run reached through a linked name keeps its cache)."""
    return path if "://" in path else os.path.realpath(path)


def _state_digest(checkpoint: str) -> str:
    fs, root = fsspec.core.url_to_fs(checkpoint)
    return hashlib.sha256(fs.cat_file(posixpath.join(root, STATE_FILE))).hexdigest()


def _read_cache(path: str) -> dict[str, np.ndarray] | None:
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        return None
    try:
        with np.load(io.BytesIO(fs.cat_file(root)), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as err:  # a damaged file is recomputed, not trusted
        warnings.warn(f"ignoring unreadable cache {path}: {err}", stacklevel=2)
        return None


def _write_cache(path: str, arrays: dict[str, np.ndarray]) -> None:
    """np.savez to a temporary name in the same directory, then a rename: never half a file."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    fs, root = fsspec.core.url_to_fs(path)
    tmp = f"{root}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        fs.pipe_file(tmp, buf.getvalue())
        fs.mv(tmp, root)
    except OSError as err:  # e.g. a read-only run directory: the numbers are still right
        warnings.warn(f"could not write the per-user cache {path}: {err}", stacklevel=2)


@torch.no_grad()
def compute_per_user(run: Any, split: str, mask_valid: bool, ks: tuple[int, ...]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(users, {metric: float64 [users]}) of a restored run (trainer.restore.RestoredRun) on `split`,
    exactly as trainer/loop.py's evaluator scores it, in one process."""
    user_emb, item_emb = ranking_embeddings(run.model, run.splits[Split.TRAIN], run.cfg.eval.popularity_offset)
    exclude = [run.splits[Split.TRAIN]] + ([run.splits[Split.VALID]] if mask_valid else [])
    result = evaluate(user_emb, item_emb, run.splits[SPLITS[split]], exclude, ks=ks,
                      user_chunk=run.cfg.eval.user_chunk, item_chunk=run.cfg.eval.item_chunk,
                      rank=0, world_size=1, reduce=False, per_user=True)
    return result.users, {k: np.asarray(v, dtype=np.float64) for k, v in result.per_user.items()}


def load_per_user(run_dir: str, split: str = "test", metrics: tuple[str, ...] = ("recall@20",), *,
                  mask_valid: bool = False, data_url: str | None = None, use_cache: bool = True) -> PerUser:
    """Per-user values of `run_dir`'s best checkpoint: from the cache when it is current, else
    restored and evaluated (every K of the run's eval.ks plus those of `metrics`), then cached."""
    if split not in SPLITS:
        raise CompareError(f"split {split!r}: expected one of {list(SPLITS)}")
    run_dir = run_dir.rstrip("/")
    record = read_metrics(run_dir)
    recorded = record.get(recorded_key(split, mask_valid)) or {}
    config = record["config"]
    checkpoint = find_checkpoint(run_dir, record)
    digest = _state_digest(checkpoint)
    path = f"{run_dir}/{cache_name(split, mask_valid)}"
    cache = _read_cache(path) if use_cache else None
    if cache is not None and (
            int(cache.get("version", -1)) != CACHE_VERSION or str(cache.get("checkpoint")) != _canonical(checkpoint)
            or str(cache.get("state_sha256")) != digest or str(cache.get("split")) != split
            or bool(cache.get("mask_valid")) != mask_valid or not set(metrics) <= set(cache["keys"].tolist())):
        cache = None  # another checkpoint (a resumed or retrained run), or fewer metrics than asked
    if cache is not None:
        users = cache["users"]
        values = dict(zip(cache["keys"].tolist(), cache["values"]))
    else:
        run = restore_run(run_dir, data_url)
        ks = tuple(sorted({int(k) for k in run.cfg.eval.ks} | {parse_metric(m)[1] for m in metrics}))
        users, values = compute_per_user(run, split, mask_valid, ks)
        checkpoint = run.checkpoint
        keys = list(values)
        _write_cache(path, {"version": np.array(CACHE_VERSION), "checkpoint": np.array(_canonical(checkpoint)),
                            "state_sha256": np.array(_state_digest(checkpoint)), "split": np.array(split),
                            "mask_valid": np.array(mask_valid), "keys": np.array(keys), "users": users,
                            "values": np.stack([values[k] for k in keys]) if keys else np.zeros((0, len(users)))})
        del run
    missing = [m for m in metrics if m not in values]
    if missing:
        raise CompareError(f"{run_dir}: no per-user values for {missing}")
    return PerUser(run_dir, config["model"]["name"], int(config["run"]["seed"]), checkpoint, np.asarray(users),
                   {m: np.asarray(values[m], dtype=np.float64) for m in metrics}, dict(recorded), cache is not None)


def consistency(pu: PerUser, tolerance: float = 1e-6) -> dict[str, Any]:
    """Mean of the per-user values vs the run's recorded figures: {metric: (recorded, recomputed)},
    the largest |difference|, the user counts, and whether everything agrees."""
    rows = {m: (float(pu.recorded[m]), float(v.mean()) if len(v) else float("nan"))
            for m, v in pu.values.items() if m in pu.recorded}
    diff = max((abs(r - c) for r, c in rows.values()), default=float("nan"))
    users = pu.recorded.get("num_users")
    ok = bool(rows) and diff <= tolerance and (users is None or int(users) == len(pu.users))
    out = {"metrics": rows, "max_abs_diff": diff, "recorded_users": users, "users": int(len(pu.users)),
           "tolerance": tolerance, "ok": ok}
    if not rows:
        out["reason"] = f"metrics.json records none of {sorted(pu.values)} for this split"
    return out


def paired_t(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """(t, two-sided p, one-sided p for H1 mean(a - b) > 0) of scipy.stats.ttest_rel; differences with
    no spread (e.g. a run against itself) give t = 0, p = 1, 0.5 when they are all 0, else t = ±inf."""
    from scipy import stats

    d = a - b
    if len(d) < 2:
        return float("nan"), float("nan"), float("nan")
    if np.all(d == d[0]):  # scipy's 0/0 would be nan (and warn)
        mean = float(d[0])
        if mean == 0:
            return 0.0, 1.0, 0.5
        return float(np.sign(mean) * np.inf), 0.0, 0.0 if mean > 0 else 1.0
    two = stats.ttest_rel(a, b, alternative="two-sided")
    greater = stats.ttest_rel(a, b, alternative="greater")
    return float(two.statistic), float(two.pvalue), float(greater.pvalue)


def paired_bootstrap(d: np.ndarray, resamples: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> tuple[tuple[float, float], float, float]:
    """((CI low, CI high), two-sided p, one-sided p for H1 mean(d) > 0): users resampled with
    replacement `resamples` times; percentile CI; shift-method p-values (module docstring)."""
    n = len(d)
    if n == 0 or resamples < 1:
        return (float("nan"), float("nan")), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    mean = float(d.mean())
    means = np.empty(resamples)
    chunk = max(1, 4_000_000 // n)  # bounded memory: chunk x n indices at a time
    for lo in range(0, resamples, chunk):
        hi = min(lo + chunk, resamples)
        means[lo:hi] = d[rng.integers(0, n, size=(hi - lo, n))].mean(1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    shifted = means - mean
    p_two = (1 + int(np.count_nonzero(np.abs(shifted) >= abs(mean)))) / (resamples + 1)
    p_greater = (1 + int(np.count_nonzero(shifted >= mean))) / (resamples + 1)
    return (float(low), float(high)), p_two, p_greater


def _seed_summary(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (n - 1; nan for one seed) over seeds."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else float("nan")


def paired_stats(a_sides: list[np.ndarray], b_sides: list[np.ndarray], resamples: int = 10_000,
                 seed: int = 0) -> dict[str, Any]:
    """Every figure of one comparison from the per-user vectors of A's and B's seeds (same users,
    same order): each user's value averaged over a side's seeds, then the paired tests."""
    a, b = np.mean(a_sides, axis=0), np.mean(b_sides, axis=0)
    t, p_two, p_greater = paired_t(a, b)
    (low, high), pb_two, pb_greater = paired_bootstrap(a - b, resamples, seed)
    seeds_a, seeds_b = [float(v.mean()) for v in a_sides], [float(v.mean()) for v in b_sides]
    (ma, sa), (mb, sb) = _seed_summary(seeds_a), _seed_summary(seeds_b)
    return {"users": int(len(a)), "mean_a": float(a.mean()), "mean_b": float(b.mean()),
            "diff": float((a - b).mean()), "seed_means_a": seeds_a, "seed_means_b": seeds_b,
            "seed_mean_a": ma, "seed_std_a": sa, "seed_mean_b": mb, "seed_std_b": sb,
            "t": t, "p_t_two_sided": p_two, "p_t_greater": p_greater,
            "ci95": [low, high], "p_boot_two_sided": pb_two, "p_boot_greater": pb_greater,
            "resamples": resamples, "bootstrap_seed": seed}


def side_label(runs: list[PerUser]) -> str:
    """The runs' common name without the `_s<seed>` suffix, else their names joined."""
    groups = list(dict.fromkeys(seed_group(r.name) for r in runs))
    return groups[0] if len(groups) == 1 else " + ".join(groups)


def compare(a: list[PerUser], bs: list[list[PerUser]], metrics: list[str], resamples: int = 10_000,
            seed: int = 0) -> list[dict[str, Any]]:
    """A against each B, for every metric; all runs must have the same users (same dataset and split)."""
    ref = a[0]
    for pu in [*a, *(p for b in bs for p in b)]:
        if not np.array_equal(pu.users, ref.users):
            raise CompareError(f"{pu.run_dir} and {ref.run_dir} were evaluated on different users "
                               f"({len(pu.users)} vs {len(ref.users)}): not the same dataset or split, so not paired")
    out = []
    for b in bs:
        for m in metrics:
            stats = paired_stats([p.values[m] for p in a], [p.values[m] for p in b], resamples, seed)
            out.append({"a": side_label(a), "b": side_label(b), "metric": m, **stats})
    return out


def _f(x: float, spec: str = ".4f") -> str:
    return "nan" if x != x else format(x, spec)


def _p(p: float) -> str:
    if p != p:
        return "nan"
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def _pm(mean: float, std: float) -> str:
    return _f(mean) if std != std else f"{_f(mean)} ± {_f(std)}"


def render(result: dict[str, Any]) -> str:
    """The markdown block: setting, consistency check, per-seed figures, one row per comparison."""
    split, metrics = result["split"], result["metrics"]
    comps = result["comparisons"]
    masked = ("training and valid items masked (stricter variant)" if result["mask_valid"]
              else "training items masked" + ("; valid items not masked (primary protocol)" if split == "test" else ""))
    users = comps[0]["users"] if comps else 0
    lines = [f"Paired comparison on **{split}** ({users} users with a held-out item; {masked}). Each user's "
             f"metric is averaged over a side's seeds; paired t-test (scipy.stats.ttest_rel) and paired bootstrap "
             f"over users ({result['resamples']} resamples, seed {result['bootstrap_seed']}; 95% percentile CI; "
             f"shift-method p). One-sided p: H1 = A > B.", ""]
    runs = [("A", r) for r in result["a"]["runs"]] + [(f"B{i + 1}" if len(result["b"]) > 1 else "B", r)
                                                       for i, side in enumerate(result["b"]) for r in side["runs"]]
    worst = max((r["check"]["max_abs_diff"] for _, r in runs), default=float("nan"))
    bad = [r["name"] for _, r in runs if not r["check"]["ok"]]
    key = recorded_key(split, result["mask_valid"])
    lines += [(f"Consistency: every run's per-user mean reproduces its metrics.json `{key}` (largest |difference| "
               f"{worst:.1e}, tolerance {result['tolerance']:.0e}; user counts equal)." if not bad else
               f"**Consistency check FAILED** for {', '.join(bad)}: per-user means do not reproduce metrics.json "
               f"`{key}` (largest |difference| {worst:.1e}); these numbers are not the runs' recorded ones."), ""]
    lines += ["| side | run | model | seed | " + " | ".join(metrics) + " | cached |",
              "|---|---|---|---|" + "---|" * len(metrics) + "---|"]
    for side, r in runs:
        lines.append(f"| {side} | {r['name']} | {r['model']} | {r['seed']} | "
                     + " | ".join(_f(r["means"][m]) for m in metrics) + f" | {'yes' if r['cached'] else 'no'} |")
    lines += ["", "| metric | A | B | A: seeds, mean ± std | B: seeds, mean ± std | mean A | mean B | A − B | "
              "95% bootstrap CI | bootstrap p | bootstrap p (A > B) | t | t-test p | t-test p (A > B) |",
              "|" + "---|" * 14]
    for c in comps:
        lines.append(
            f"| {c['metric']} | {c['a']} | {c['b']} | {_pm(c['seed_mean_a'], c['seed_std_a'])} (n={len(c['seed_means_a'])}) | "
            f"{_pm(c['seed_mean_b'], c['seed_std_b'])} (n={len(c['seed_means_b'])}) | {_f(c['mean_a'])} | "
            f"{_f(c['mean_b'])} | {_f(c['diff'], '+.4f')} | [{_f(c['ci95'][0], '+.4f')}, {_f(c['ci95'][1], '+.4f')}] | "
            f"{_p(c['p_boot_two_sided'])} | {_p(c['p_boot_greater'])} | {_f(c['t'], '.2f')} | "
            f"{_p(c['p_t_two_sided'])} | {_p(c['p_t_greater'])} |")
    lines += ["", "Std over seeds: sample standard deviation (n - 1). p-values are not corrected for "
              "the number of comparisons."]
    return "\n".join(lines)


def _run_entry(pu: PerUser) -> dict[str, Any]:
    return {"run_dir": pu.run_dir, "name": pu.name, "model": pu.model, "seed": pu.seed,
            "checkpoint": pu.checkpoint, "cached": pu.cached, "users": int(len(pu.users)),
            "means": {m: float(v.mean()) for m, v in pu.values.items()}, "check": pu.check}


def run(a_dirs: list[str], b_groups: list[list[str]], metrics: list[str], split: str = "test", *,
        mask_valid: bool = False, data_url: str | None = None, use_cache: bool = True,
        resamples: int = 10_000, seed: int = 0, tolerance: float = 1e-6,
        allow_mismatch: bool = False, log=print) -> dict[str, Any]:
    """Load (or compute) every run's per-user values, check them against metrics.json, compare."""
    for m in metrics:
        parse_metric(m)
    recorded_key(split, mask_valid)  # refuses --mask-valid on valid before any restore
    loaded: dict[str, PerUser] = {}

    def get(d: str) -> PerUser:
        if d.rstrip("/") not in loaded:
            pu = load_per_user(d, split, tuple(metrics), mask_valid=mask_valid, data_url=data_url, use_cache=use_cache)
            pu.check = consistency(pu, tolerance)
            c = pu.check
            log(f"{pu.name}: {'cached' if pu.cached else 'computed'} per-user {split} values of {c['users']} users; "
                f"vs metrics.json {recorded_key(split, mask_valid)}: max |diff| {c['max_abs_diff']:.1e} over "
                f"{len(c['metrics'])} metrics, users {c['recorded_users']} -> {'ok' if c['ok'] else 'MISMATCH'}",
                file=sys.stderr)
            loaded[d.rstrip("/")] = pu
        return loaded[d.rstrip("/")]

    a = [get(d) for d in a_dirs]
    bs = [[get(d) for d in group] for group in b_groups]
    bad = [pu for pu in loaded.values() if not pu.check["ok"]]
    if bad and not allow_mismatch:
        raise CompareError("consistency check failed: per-user means do not reproduce metrics.json for "
                           + "; ".join(f"{pu.run_dir} ({pu.check.get('reason') or json.dumps(pu.check['metrics'])}, "
                                       f"users {pu.check['users']} vs recorded {pu.check['recorded_users']})"
                                       for pu in bad)
                           + " (--allow-mismatch reports anyway)")
    return {"split": split, "mask_valid": mask_valid, "metrics": list(metrics), "resamples": resamples,
            "bootstrap_seed": seed, "tolerance": tolerance,
            "a": {"label": side_label(a), "runs": [_run_entry(p) for p in a]},
            "b": [{"label": side_label(b), "runs": [_run_entry(p) for p in b]} for b in bs],
            "comparisons": compare(a, bs, list(metrics), resamples, seed)}


def _plain(x: Any) -> Any:
    """JSON-safe copy: NaN/inf (a one-seed std, a degenerate test) become null, tuples lists."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def _write_text(url: str, text: str) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    parent = posixpath.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    fs.pipe_file(tmp, text.encode())
    fs.mv(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--a", nargs="+", required=True, metavar="RUN_DIR", help="side A: run directories (seeds)")
    parser.add_argument("--b", nargs="+", action="append", required=True, metavar="RUN_DIR",
                        help="side B: run directories (seeds); repeat --b to compare A with several groups")
    parser.add_argument("--metric", nargs="+", default=["recall@20"], help="metrics, e.g. recall@20 ndcg@20")
    parser.add_argument("--split", choices=sorted(SPLITS), default="test")
    parser.add_argument("--mask-valid", action="store_true", help="test with valid items masked too (stricter)")
    parser.add_argument("--data", metavar="URL", help="the dataset's URL when it moved since training")
    parser.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples of users")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--tolerance", type=float, default=1e-6, help="consistency check vs metrics.json")
    parser.add_argument("--allow-mismatch", action="store_true", help="report even if the consistency check fails")
    parser.add_argument("--no-cache", action="store_true", help="recompute the per-user values (and rewrite the cache)")
    parser.add_argument("--json", metavar="OUT", help="write every number as JSON to OUT")
    add_section_args(parser)
    args = parser.parse_args(argv)
    check_section_args(parser, args)
    try:
        result = run(args.a, args.b, args.metric, args.split, mask_valid=args.mask_valid, data_url=args.data,
                     use_cache=not args.no_cache, resamples=args.resamples, seed=args.seed,
                     tolerance=args.tolerance, allow_mismatch=args.allow_mismatch)
    except (CompareError, RestoreError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    markdown = render(result)
    print(markdown)
    if args.json:
        _write_text(args.json, json.dumps(_plain(result), indent=1, allow_nan=False))
    if args.write:
        write_section(args.write, args.markdown_section, markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

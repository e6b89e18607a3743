"""A finished run's outputs: `metrics.json` and `results.md` in the run directory.

Written through fsspec (local path or object store) under a temporary name and then moved
into place, so a reader never sees half a file. The run's figures (trainer/plots.py: training
curves, test metrics over K, codebook usage when recorded) go next to them as PNGs, and
results.md links them, so the report reads on its own in any markdown viewer.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import fsspec

from trainer.config import Config
from trainer.evaluate import metrics_table
from trainer.plots import TITLES, write_run_plots


def _write_atomically(url: str, text: str, storage_options: dict) -> None:
    fs, path = fsspec.core.url_to_fs(url, **storage_options)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with fs.open(tmp, "w") as f:
        f.write(text)
    fs.mv(tmp, path)


def users_label(metrics: dict[str, Any]) -> str:
    """The users an evaluation counted: "N users", or "sampled N of M users" (`eval.sample_users`)."""
    if "sampled_users" in metrics:
        return f"sampled {metrics['sampled_users']} of {metrics.get('sampled_from', '?')} users"
    return f"{metrics.get('num_users', '?')} users"


def render(summary: dict[str, Any], cfg: Config, plots: list[str] | tuple[str, ...] = ()) -> str:
    """results.md; `plots`: PNG file names in the same directory to embed (none for a sweep's summary)."""
    ks = tuple(cfg.eval.ks)
    sampled = ([f"Evaluated on a random sample of users (`eval.sample_users: {cfg.eval.sample_users}`, seed "
                f"{cfg.run.seed}): estimates of the full-ranking figures, not comparable to published ones.", ""]
               if "sampled_users" in summary["best_test"] else [])
    return "\n".join([
        f"# {cfg.run.name}: {cfg.model.name} on {cfg.data.url}",
        "",
        f"Best {cfg.eval.select_split} {cfg.eval.select_metric} {summary['best_score']:.4f} at epoch {summary['best_epoch']} "
        f"(of {summary['epoch']} run); test figures are that epoch's.",
        "",
        *sampled,
        *([f"Valid and test ranked by score {'+' if cfg.eval.popularity_offset > 0 else '-'} "
           f"{abs(cfg.eval.popularity_offset):g} * log(1 + n_i), n_i the item's training "
           "interactions (`eval.popularity_offset`, trainer/ranking.py).", ""] if cfg.eval.popularity_offset else []),
        f"## Test ({users_label(summary['best_test'])}; training items masked)",
        "",
        metrics_table(summary["best_test"], ks),
        "",
        "## Test, valid items masked too (stricter, RecBole-style)",
        "",
        metrics_table(summary["best_test_valid_masked"], ks),
        "",
        f"## Valid ({users_label(summary['best_valid'])})",
        "",
        metrics_table(summary["best_valid"], ks),
        "",
    ] + ([f"## Unbiased valid ({users_label(summary['best_unbiased_valid'])}; the simulator's "
          "uniform-exposure validation split, train, valid and test items masked)", "",
          metrics_table(summary["best_unbiased_valid"], ks), ""] if summary.get("best_unbiased_valid") else [])
      + ([f"## Unbiased test ({users_label(summary['best_unbiased_test'])}; the simulator's "
          "uniform-exposure split, train, valid and test items masked)", "",
          metrics_table(summary["best_unbiased_test"], ks), ""] if summary.get("best_unbiased_test") else [])
      + (["## Plots", "", *(f"![{TITLES.get(name, name)}]({name})" for name in plots), ""] if plots else []))


def write_results(summary: dict[str, Any], cfg: Config) -> str:
    """Write metrics.json, the plots and results.md into the run directory; returns the markdown."""
    run_dir = summary["run_dir"]
    options = cfg.data.storage_options if "://" in run_dir else {}
    payload = {"config": cfg.to_dict(), **summary}
    # metrics.json first: the figures are drawn from it and must never cost the numbers.
    _write_atomically(f"{run_dir}/metrics.json", json.dumps(payload, indent=1, default=str), options)
    plots = write_run_plots(summary, run_dir, options, cfg.eval.select_metric)
    markdown = render(summary, cfg, plots)
    _write_atomically(f"{run_dir}/results.md", markdown, options)
    return markdown

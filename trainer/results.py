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


def render(summary: dict[str, Any], cfg: Config, plots: list[str] | tuple[str, ...] = ()) -> str:
    """results.md; `plots`: PNG file names in the same directory to embed (none for a sweep's summary)."""
    ks = tuple(cfg.eval.ks)
    users = summary["best_test"].get("num_users", "?")
    return "\n".join([
        f"# {cfg.run.name}: {cfg.model.name} on {cfg.data.url}",
        "",
        f"Best valid {cfg.eval.select_metric} {summary['best_score']:.4f} at epoch {summary['best_epoch']} "
        f"(of {summary['epoch']} run); test figures are that epoch's.",
        "",
        f"## Test ({users} users; training items masked)",
        "",
        metrics_table(summary["best_test"], ks),
        "",
        "## Test, valid items masked too (stricter, RecBole-style)",
        "",
        metrics_table(summary["best_test_valid_masked"], ks),
        "",
        f"## Valid ({summary['best_valid'].get('num_users', '?')} users)",
        "",
        metrics_table(summary["best_valid"], ks),
        "",
    ] + (["## Plots", "", *(f"![{TITLES.get(name, name)}]({name})" for name in plots), ""] if plots else []))


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

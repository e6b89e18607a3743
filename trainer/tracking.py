"""Experiment tracking: wandb on rank 0 when enabled (offline by default), a no-op otherwise.

wandb gets the config at start, the scalar metrics of every epoch (per-code codebook counts and
other lists stay in the history only), and at the end the best-valid figures and the run's plots
(trainer/plots.py, drawn from the same summary results.md is made from) as images.
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Any

from trainer.config import Config


class Tracker:
    def __init__(self, cfg: Config, rank: int) -> None:
        self._run = None
        self._metric = cfg.eval.select_metric
        if rank != 0 or not cfg.logging.wandb:
            return
        import wandb  # imported lazily: ~1 s of start-up that runs without tracking skip

        storage = cfg.run.storage_path
        local_dir = os.path.join(os.path.abspath(storage), cfg.run.name) if "://" not in storage else tempfile.mkdtemp()
        os.makedirs(local_dir, exist_ok=True)
        self._run = wandb.init(project=cfg.logging.wandb_project, name=cfg.run.name, config=cfg.to_dict(),
                               mode=cfg.logging.wandb_mode, dir=local_dir, resume="allow")

    def log(self, metrics: dict[str, Any]) -> None:
        if self._run is not None:
            self._run.log({k: v for k, v in metrics.items() if isinstance(v, (int, float))}, step=int(metrics["epoch"]))

    def finish(self, summary: dict[str, Any]) -> None:
        if self._run is not None:
            for section in ("best_valid", "best_test", "best_test_valid_masked", "best_unbiased_test",
                            "best_unbiased_valid"):
                for key, value in summary.get(section, {}).items():
                    self._run.summary[f"{section}/{key}"] = value
            self._log_plots(summary)
            self._run.finish()
            # finish() can return before wandb's service process has flushed the run file (seen on a loaded CI
            # machine: the .wandb file held its header only); teardown waits for that process to exit, so the
            # offline run is complete on disk when training returns. The next wandb.init starts a new service.
            import wandb
            wandb.teardown()

    def _log_plots(self, summary: dict[str, Any]) -> None:
        """The run's figures as wandb images (in memory: the run directory may be an object store)."""
        import wandb
        from PIL import Image

        from trainer.plots import TITLES, run_plots

        try:
            images = {f"plots/{name.removesuffix('.png')}": wandb.Image(Image.open(io.BytesIO(png)), caption=TITLES[name])
                      for name, png in run_plots(summary, self._metric).items()}
        except Exception as err:  # a figure must never cost a finished run its wandb summary
            print(f"[cimrec] wandb: plots not logged ({err!r})", flush=True)
            return
        if images:
            self._run.log(images)

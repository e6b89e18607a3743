"""A testing aid: make one worker die abruptly once, to exercise Ray Train's recovery.

With `run.fail_at_step=N` (N >= 0) the last rank calls `os._exit(1)` when it reaches global
training step N (steps counted over epochs from 0: epoch e, step s is e * steps_per_epoch + s),
without any cleanup, as a killed process would. Before dying it writes the marker file
`<run dir>/.fail_at_step-N` through fsspec (local or object store), and a worker that finds the
marker never fails, so the group Ray restarts from the last checkpoint (`run.max_failures >= 1`)
runs to the end. Delete the marker to fail again.
"""

from __future__ import annotations

import os
import sys

from data_loaders.format import url_to_fs
from trainer.config import Config


class FaultInjector:
    def __init__(self, cfg: Config, rank: int, world_size: int) -> None:
        self.step = cfg.run.fail_at_step
        self.armed = self.step >= 0 and rank == world_size - 1
        if not self.armed:
            return
        run_dir = f"{cfg.run.storage_path.rstrip('/')}/{cfg.run.name}"
        options = cfg.data.storage_options if "://" in run_dir else {}
        self.fs, root = url_to_fs(run_dir, options)
        self.marker = f"{root.rstrip('/')}/.fail_at_step-{self.step}"
        self.armed = not self.fs.exists(self.marker)

    def maybe_fail(self, global_step: int) -> None:
        if not self.armed or global_step != self.step:
            return
        self.fs.makedirs(self.marker.rsplit("/", 1)[0], exist_ok=True)
        with self.fs.open(self.marker, "w") as f:
            f.write(f"worker exited on purpose at global step {global_step} (run.fail_at_step)\n")
        print(f"[cimrec] run.fail_at_step={self.step}: this worker exits now, on purpose", file=sys.stderr, flush=True)
        os._exit(1)

"""`python trainer/main.py --config configs/X.yaml [--section.key=value ...]`

Loads the typed config, launches a Ray Train TorchTrainer (a local Ray when no cluster address
is given), and writes the best-valid epoch's metrics to the run directory as `metrics.json` and
`results.md`, printing the table. Submitted to a cluster the same way:
`ray job submit --working-dir . -- python trainer/main.py --config ... --scaling.address=auto`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

if __package__ in (None, ""):
    # Run as a script: Python put trainer/ itself first on sys.path, where config.py, loop.py ...
    # would shadow same-named top-level modules. Put the repository root there instead.
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    sys.path.insert(0, os.path.dirname(_HERE))

import fsspec  # noqa: E402

from data_loaders.format import DatasetError, url_to_fs  # noqa: E402
from data_loaders.storage import StorageError, retry, with_default_timeouts  # noqa: E402
from data_loaders.stream import open_dataset  # noqa: E402
from trainer.checkpoint import best_checkpoint  # noqa: E402
from trainer.config import Config, ConfigError, load_config  # noqa: E402
from trainer.results import write_results  # noqa: E402


def _storage(cfg: Config) -> tuple[str, Any]:
    """Ray's storage_path (+ filesystem for URLs that need fsspec options, e.g. a local S3).

    Ray Train takes a pyarrow filesystem: an fsspec one with the options (endpoint, keys, the
    short S3 timeouts of data_loaders/storage.py) is wrapped in pyarrow's FSSpecHandler, and
    is pickled to the workers and the controller with its options.
    """
    path = cfg.run.storage_path
    if "://" not in path:
        return os.path.abspath(path), None
    if not cfg.data.storage_options:
        return path, None
    import pyarrow.fs

    protocol, _, rest = path.partition("://")
    fs = fsspec.filesystem(protocol, **with_default_timeouts(protocol, cfg.data.storage_options))
    return rest, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def preflight(cfg: Config) -> None:
    """Fail fast, before any Ray worker starts, when the dataset or the run storage cannot be
    reached, or has no rows in `eval.select_split`: a StorageError (after the retry budget) or
    DatasetError naming the URL."""
    dataset = open_dataset(cfg.data.url, storage_options=cfg.data.storage_options or None, verify=False)
    from trainer.loop import present_splits  # imports Ray Train: loaded when needed, as in fit()
    present_splits(cfg, dataset.manifest)  # eval.select_split names a split the dataset has
    run_dir = f"{cfg.run.storage_path.rstrip('/')}/{cfg.run.name}"
    fs, root = url_to_fs(run_dir, cfg.data.storage_options if "://" in run_dir else None)
    retry(lambda: fs.makedirs(root, exist_ok=True), url=run_dir, what="creating the run directory")


def fit(cfg: Config, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Run training to the end (or early stop) and return the rank-0 summary.

    `callbacks`: Ray Train `UserCallback`s, e.g. the one that forwards reports to a Tune sweep.
    """
    preflight(cfg)  # before Ray starts anything: a wrong URL or a dead store is a clear error here
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from trainer.loop import train_loop_per_worker

    # Ray Train V2 re-routes worker print() through a logger that log_to_driver echoes again:
    # every line would show twice on the console.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")
    if not ray.is_initialized():
        if cfg.scaling.address:
            ray.init(address=cfg.scaling.address)
        else:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=True)
    storage_path, storage_filesystem = _storage(cfg)
    worker_cfg = Config.from_dict(cfg.to_dict())
    # Ray workers run in their own working directory: hand them absolute paths.
    if "://" not in worker_cfg.data.url:
        worker_cfg.data.url = os.path.abspath(worker_cfg.data.url)
    if "://" not in worker_cfg.run.storage_path:
        worker_cfg.run.storage_path = os.path.abspath(worker_cfg.run.storage_path)
    trainer = TorchTrainer(
        train_loop_per_worker=train_loop_per_worker,
        train_loop_config=worker_cfg.to_dict(),
        torch_config=TorchConfig(backend="nccl" if cfg.scaling.use_gpu else "gloo"),
        scaling_config=ScalingConfig(num_workers=cfg.scaling.num_workers, use_gpu=cfg.scaling.use_gpu,
                                     resources_per_worker={"CPU": cfg.scaling.cpus_per_worker}),
        run_config=RunConfig(
            name=cfg.run.name, storage_path=storage_path, storage_filesystem=storage_filesystem,
            callbacks=callbacks,
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            # Ray keeps the two best-valid checkpoints and always the latest: the best for results
            # and trainer/restore.py, the latest to resume from, and at least one older complete
            # one to fall back to if the latest turns out corrupt (trainer/checkpoint.py).
            checkpoint_config=CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="checkpoint_score",
                                               checkpoint_score_order="max"),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    summary = dict(result.return_value or {})
    summary["run_dir"] = f"{cfg.run.storage_path.rstrip('/')}/{cfg.run.name}"
    best = best_checkpoint(result.best_checkpoints or [], summary.get("best_epoch", -1))
    summary["best_checkpoint"] = best.path if best is not None else None
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML experiment file (see docs/CONFIG.md)")
    args, overrides = parser.parse_known_args(argv)
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        summary = fit(cfg)
    except (StorageError, DatasetError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = write_results(summary, cfg)
    print(table)
    print(json.dumps({"run_dir": summary["run_dir"], "best_epoch": summary["best_epoch"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python tune/main.py --config configs/X.yaml --space tune/spaces/Y.yaml [--section.key=value ...]`

A Ray Tune sweep over the trainer. The base config (file + overrides) is what every trial
shares; the space file says which keys are sampled and how (tune/spaces/README.md). Each trial
is a full trainer run with its own Ray Train workers; its per-evaluation valid metrics reach
Tune, and ASHA stops the weaker trials early. The sweep lives in `<run.storage_path>/<run.name>/`
(trials' Train runs under `trials/<trial id>/`); running the same command again resumes an
interrupted sweep there. At the end the best trial by the valid metric (never test) is written
as `best_config.yaml`, which `python trainer/main.py --config` accepts, and its test figures
(taken by the trainer at that trial's best-valid epoch) as `best.json` and `best_results.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

if __package__ in (None, ""):
    # Run as a script: Python put tune/ first on sys.path, where main.py, space.py ... would
    # shadow same-named top-level modules. Put the repository root there instead.
    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    sys.path.insert(0, os.path.dirname(_HERE))

import fsspec  # noqa: E402
import yaml  # noqa: E402

from trainer.config import Config, ConfigError, load_config  # noqa: E402
from tune.space import Space, load_space, plain, trial_config  # noqa: E402


def sweep_url(base: Config) -> str:
    """`<run.storage_path>/<run.name>` as a URL or an absolute local path."""
    storage = base.run.storage_path
    if "://" not in storage:
        storage = os.path.abspath(storage)
    return f"{storage.rstrip('/')}/{base.run.name}"


def _write(url: str, text: str, base: Config) -> None:
    options = base.data.storage_options if "://" in url else {}
    fs, path = fsspec.core.url_to_fs(url, **options)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as f:
        f.write(text)


def _read_json(url: str, base: Config) -> dict[str, Any]:
    options = base.data.storage_options if "://" in url else {}
    with fsspec.open(url, "r", **options) as f:
        return json.load(f)


def _tuner(base: Config, space: Space) -> Any:
    """A new Tuner, or the restored one when the sweep directory holds an interrupted sweep."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from trainer.main import _storage
    from tune.trial import run_trial

    settings = space.tune
    trainable = tune.with_parameters(run_trial, base=base.to_dict(), trials_url=f"{sweep_url(base)}/trials",
                                     settings=settings)
    # The trial function only waits on its Train run, whose workers reserve their own CPUs
    # (`tune.cpus_per_worker`): a whole CPU for the function would idle a core per trial on a
    # small machine (Ray rejects an empty request, hence a token share). `max_concurrent_trials`
    # bounds how many trials run at once instead.
    trainable = tune.with_resources(trainable, {"cpu": 0.01})
    # The trainer's own mapping of run.storage_path (+ data.storage_options) to Ray's storage, so
    # the sweep and its trials' Train runs resolve the same URL the same way.
    storage_path, storage_filesystem = _storage(base)
    experiment = f"{storage_path.rstrip('/')}/{base.run.name}"
    if tune.Tuner.can_restore(experiment, storage_filesystem=storage_filesystem):
        print(f"[cimrec] resuming the sweep in {sweep_url(base)}", flush=True)
        return tune.Tuner.restore(experiment, trainable=trainable, resume_errored=True,
                                  storage_filesystem=storage_filesystem)
    if settings.searcher == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        searcher: Any = OptunaSearch(seed=settings.seed)
    else:
        # Tune applies TuneConfig's max_concurrent_trials to a Searcher such as Optuna's, but
        # silently ignores it for a generator passed in: give it to the generator itself.
        searcher = BasicVariantGenerator(random_state=settings.seed, max_concurrent=settings.max_concurrent_trials)
    scheduler = None
    if settings.scheduler == "asha":
        # Rungs count epochs (the trainer reports `epoch` with every evaluation).
        scheduler = ASHAScheduler(time_attr="epoch", max_t=settings.max_t, grace_period=settings.grace_period,
                                  reduction_factor=settings.reduction_factor)
    return tune.Tuner(
        trainable,
        param_space=space.param_space(),
        tune_config=tune.TuneConfig(metric=settings.metric, mode="max", num_samples=settings.num_samples,
                                    search_alg=searcher, scheduler=scheduler,
                                    max_concurrent_trials=settings.max_concurrent_trials),
        run_config=tune.RunConfig(name=base.run.name, storage_path=storage_path,
                                  storage_filesystem=storage_filesystem),
    )


def summarize(grid: Any, base: Config, space: Space) -> dict[str, Any]:
    """Pick the best trial by its best valid metric; write best_config.yaml, best.json, best_results.md."""
    from trainer.results import render
    from tune.trial import trial_run_config

    metric, url = space.tune.metric, sweep_url(base)
    trials = []
    for result in grid:
        frame = result.metrics_dataframe
        reported = frame is not None and metric in frame
        trials.append({"trial_id": (result.metrics or {}).get("trial_id"), "sampled": plain(result.config),
                       "best_" + metric: float(frame[metric].max()) if reported else None,
                       "epochs": int(frame["epoch"].max()) if reported else 0,
                       "error": str(result.error) if result.error else None})
    if not any(t["best_" + metric] is not None for t in trials):
        raise RuntimeError(f"no trial of the sweep in {url} reported {metric}: {trials}")
    best = grid.get_best_result(metric=metric, mode="max", scope="all")
    trial_id, sampled = best.metrics["trial_id"], plain(best.config)
    # Every evaluation report carries a checkpoint; the trial's last one holds the trainer's
    # state, whose best_test was taken at the trial's best-valid epoch (same metric as here).
    checkpoint = best.metrics["checkpoint_path"].rstrip("/").rsplit("/", 1)[-1]
    state = _read_json(f"{url}/trials/{trial_id}/{checkpoint}/train_state.json", base)

    best_cfg = trial_config(base, sampled, "best trial")
    best_cfg.run.name = f"{base.run.name}-best"
    best_cfg.scaling.address = ""  # where to run is the caller's choice (--scaling.address=auto in a job)
    header = (f"# The best trial ({trial_id}) of the sweep in {url}: valid {space.tune.select_metric} "
              f"{state['best_score']:.4f} at epoch {state['best_epoch']}.\n"
              f"# Sampled: {json.dumps(sampled)}\n# Train it: python trainer/main.py --config <this file>\n")
    _write(f"{url}/best_config.yaml", header + yaml.safe_dump(best_cfg.to_dict(), sort_keys=False), base)
    report = {"sweep_dir": url, "metric": metric, "best_trial": trial_id, "sampled": sampled,
              "best_config": f"{url}/best_config.yaml",
              **{k: state[k] for k in ("best_score", "best_epoch", "epoch", "best_valid", "best_test",
                                       "best_test_valid_masked")},
              "trials": trials}
    _write(f"{url}/best.json", json.dumps(report, indent=1), base)
    trial_cfg = trial_run_config(base.to_dict(), sampled, trial_id, f"{url}/trials", space.tune)
    report["table"] = render(state, trial_cfg)
    _write(f"{url}/best_results.md", report["table"], base)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML experiment file every trial starts from (see docs/CONFIG.md)")
    parser.add_argument("--space", required=True, help="search-space YAML (see tune/spaces/README.md)")
    args, overrides = parser.parse_known_args(argv)
    try:
        base = load_config(args.config, overrides)
        space = load_space(args.space, base)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not base.scaling.address:
        # A Ray started here serves only this machine: keep its listeners on loopback. Read
        # when Ray is imported, so set before the first import.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")  # see trainer/main.py
    import ray

    if base.scaling.address:
        ray.init(address=base.scaling.address)
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False)
    grid = _tuner(base, space).fit()
    report = summarize(grid, base, space)
    print(report["table"])
    print(json.dumps({"sweep_dir": report["sweep_dir"], "best_trial": report["best_trial"],
                      "best_config": report["best_config"], "sampled": report["sampled"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

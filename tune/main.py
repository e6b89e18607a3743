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
import socket
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


def absolute_data_url(base: Config) -> Config:
    """`base` with a relative local `data.url` made absolute (from the directory the sweep starts in).

    Tune runs each trial in its own working directory, where `data/tiktok` names nothing; the
    trainer's own runs start where the command was typed, so the configs keep repo-relative URLs.
    """
    url = base.data.url
    if "://" not in url and not os.path.isabs(url):
        base.data.url = os.path.abspath(url)
    return base


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write(url: str, text: str, base: Config) -> None:
    options = base.data.storage_options if "://" in url else {}
    fs, path = fsspec.core.url_to_fs(url, **options)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    with fs.open(path, "w") as f:
        f.write(text)


def _trial_state(run_url: str, base: Config) -> dict[str, Any] | None:
    """The trainer's state in a trial's latest checkpoint (None before its first evaluation).

    It covers every epoch of the trial, also those before a restart, whose reports a restored
    Tune no longer holds; its best_score is the best valid metric the trial reported.
    """
    from trainer.checkpoint import STATE_FILE

    fs, path = fsspec.core.url_to_fs(run_url, **(base.data.storage_options if "://" in run_url else {}))
    states = []
    for file in fs.glob(f"{path}/checkpoint_*/{STATE_FILE}"):
        with fs.open(file, "r") as f:
            states.append(json.load(f))
    return max(states, key=lambda state: state["epoch"], default=None)


def _tuner(base: Config, space: Space) -> Any:
    """A new Tuner, or the restored one when the sweep directory holds an interrupted sweep."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from trainer.main import _storage
    from tune.trial import run_trial, trial_dirname

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
        # Rungs count epochs (the trainer reports `epoch` with every evaluation). ASHA only
        # stops trials that fall behind at a rung; the trainer ends the others itself
        # (train.epochs, patience), and so writes their results, rather than being killed at max_t.
        scheduler = ASHAScheduler(time_attr="epoch", max_t=settings.max_t, grace_period=settings.grace_period,
                                  reduction_factor=settings.reduction_factor, stop_last_trials=False)
    return tune.Tuner(
        trainable,
        param_space=space.param_space(),
        tune_config=tune.TuneConfig(metric=settings.metric, mode="max", num_samples=settings.num_samples,
                                    search_alg=searcher, scheduler=scheduler,
                                    max_concurrent_trials=settings.max_concurrent_trials,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(name=base.run.name, storage_path=storage_path,
                                  storage_filesystem=storage_filesystem),
    )


def summarize(grid: Any, base: Config, space: Space) -> dict[str, Any]:
    """Pick the best trial by its best valid metric; write best_config.yaml, best.json, best_results.md."""
    from trainer.results import render
    from tune.trial import trial_run_config

    url = sweep_url(base)
    trials, states = [], {}
    for result in grid:
        trial_id = result.path.rstrip("/").rsplit("/", 1)[-1]  # trial_dirname: the trial id
        state = _trial_state(f"{url}/trials/{trial_id}", base)
        trials.append({"trial_id": trial_id, "sampled": plain(result.config),
                       "best_score": state["best_score"] if state else None, "epochs": state["epoch"] if state else 0,
                       "error": str(result.error) if result.error else None})
        if state:
            states[trial_id] = state
    if not states:
        raise RuntimeError(f"no trial of the sweep in {url} reached an evaluation: {trials}")
    best = max((t for t in trials if t["trial_id"] in states), key=lambda t: t["best_score"])
    trial_id, sampled, state = best["trial_id"], best["sampled"], states[best["trial_id"]]

    best_cfg = trial_config(base, sampled, "best trial")
    best_cfg.run.name = f"{base.run.name}-best"
    # The sweep chose by its metric: the best config selects epochs by it too.
    best_cfg.eval.select_metric, best_cfg.eval.select_split = space.tune.select_metric, space.tune.select_split
    best_cfg.scaling.address = ""  # where to run is the caller's choice (--scaling.address=auto in a job)
    header = (f"# The best trial ({trial_id}) of the sweep in {url}: {space.tune.select_split} {space.tune.select_metric} "
              f"{state['best_score']:.4f} at epoch {state['best_epoch']}.\n"
              f"# Sampled: {json.dumps(sampled)}\n# Train it: python trainer/main.py --config <this file>\n")
    _write(f"{url}/best_config.yaml", header + yaml.safe_dump(best_cfg.to_dict(), sort_keys=False), base)
    # The test figures are the trainer's, taken at the trial's best-valid epoch: nothing is re-evaluated.
    report = {"sweep_dir": url, "metric": space.tune.metric, "best_trial": trial_id, "sampled": sampled,
              "best_config": f"{url}/best_config.yaml",
              **{k: state[k] for k in ("best_score", "best_epoch", "epoch", "best_valid", "best_test",
                                       "best_test_valid_masked")},
              **{k: state[k] for k in ("best_unbiased_valid", "best_unbiased_test") if state.get(k)},
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
        base = absolute_data_url(load_config(args.config, overrides))
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
        # When ASHA stops a trial, Tune kills it mid-run, and only Ray Train's placement-group
        # cleaner frees the CPUs its workers held (else the sweep stalls once they are all
        # held). The cleaner asks the dashboard's state API, at RAY_API_SERVER_ADDRESS (workers
        # inherit this environment): a local Ray needs its dashboard, on loopback.
        port = _free_port()
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        ray.init(num_cpus=os.cpu_count(), include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port)
    grid = _tuner(base, space).fit()
    report = summarize(grid, base, space)
    print(report["table"])
    print(json.dumps({"sweep_dir": report["sweep_dir"], "best_trial": report["best_trial"],
                      "best_config": report["best_config"], "sampled": report["sampled"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

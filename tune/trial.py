"""One Tune trial: a full trainer run, with its own Ray Train workers, reporting to Tune.

Ray 2.60's Train no longer runs as a Tune trainable itself: a function trainable calls
`trainer.main.fit` and Ray Train's `TuneReportCallback` forwards the workers' reports.
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from trainer.config import Config
from tune.space import TuneSettings, trial_config


class EvaluationReports(TuneReportCallback):
    """Forward only the reports of evaluation epochs (those that carry the sweep's metric).

    The trainer also reports epochs without an evaluation (`train.eval_every > 1`); Tune's
    strict metric check fails a trial on a result that lacks the metric, and ASHA should see
    one result per evaluation.
    """

    def __init__(self, metric: str) -> None:
        super().__init__()
        self._metric = metric

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if self._metric in metrics[0]:
            super().after_report(run_context, metrics, checkpoint)


def trial_dirname(trial: Any) -> str:
    """Tune's directory of a trial: its id, the name of its Train run under `trials/` too."""
    return trial.trial_id


def trial_run_config(base: dict[str, Any], sampled: dict[str, Any], trial_id: str, trials_url: str,
                     settings: TuneSettings) -> Config:
    """The trainer config of one trial: base + sampled values + the sweep's per-trial settings."""
    cfg = trial_config(Config.from_dict(base, "sweep base config"), sampled)
    # The trial id names the Train run, so a trial that Tune restarts after a driver failure
    # resumes its Train run from the latest checkpoint instead of starting over.
    cfg.run.name = trial_id
    cfg.run.storage_path = trials_url
    cfg.scaling.cpus_per_worker = settings.cpus_per_worker
    cfg.eval.select_metric = settings.select_metric  # best epoch, kept checkpoint, test figures: by the sweep's metric
    cfg.eval.select_split = settings.select_split
    cfg.logging.progress = False  # concurrent trials' progress bars would interleave on the console
    return cfg


def run_trial(sampled: dict[str, Any], base: dict[str, Any], trials_url: str, settings: TuneSettings) -> None:
    """The Tune function trainable (bound with `tune.with_parameters`)."""
    from trainer.main import fit
    from trainer.results import write_results

    cfg = trial_run_config(base, sampled, tune.get_context().get_trial_id(), trials_url, settings)
    summary = fit(cfg, callbacks=[EvaluationReports(settings.metric)])
    write_results(summary, cfg)  # metrics.json / results.md of trials that ran to the end

"""A real sweep through the README's command: 2 tiny trials, ASHA, a driver killed and resumed,
the best config written and trained again.

One test, because each step needs the previous one and every Ray start costs seconds here.
Why ASHA must stop the second trial: trials run one at a time (`max_concurrent_trials: 1`, and
the restored searcher state still counts the interrupted trial as running, so it resumes before
the second starts), and the random searcher's seed 1 samples learning rate 0.02 first and 0.0002
second (seed 0 samples 0.0002 twice). ASHA's rung records do not survive a driver restart (Tune
does not checkpoint scheduler state), but the first trial fills the rungs again as it resumes
(each result lands in the highest rung it has not yet filled), so the slow trial meets a cutoff at
epoch 1 or 2 and ends before `max_t` = 4.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trainer.config import load_config

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

BASE = """\
run: {{name: sweep, storage_path: {storage}}}
data: {{url: {data}}}
model: {{name: lightgcn, num_layers: 1}}
train: {{epochs: 4, batch_size: 256, eval_every: 1, patience: 10}}
scaling: {{num_workers: 1}}
logging: {{progress: false}}
"""
SPACE = """\
train.learning_rate: {choice: [0.02, 0.0002]}
tune: {num_samples: 2, scheduler: asha, grace_period: 1, reduction_factor: 2, seed: 1,
       max_concurrent_trials: 1, cpus_per_worker: 0.5}
"""


def _interrupted(sweep: Path) -> bool:
    """True once a trial has a checkpoint and the saved experiment state knows that trial."""
    checkpoints = list(sweep.glob("trials/*/checkpoint_*/train_state.json"))
    states = sorted(sweep.glob("experiment_state-*.json"))
    return bool(checkpoints and states) and checkpoints[0].parts[-3] in states[-1].read_text()


def test_sweep_resumes_after_the_driver_dies_and_writes_a_runnable_best_config(tiny_dataset, ray_env, tmp_path: Path) -> None:
    storage = tmp_path / "sweeps"
    (tmp_path / "base.yaml").write_text(BASE.format(storage=storage, data=tiny_dataset))
    (tmp_path / "space.yaml").write_text(SPACE)
    command = [sys.executable, "tune/main.py", "--config", str(tmp_path / "base.yaml"), "--space", str(tmp_path / "space.yaml")]
    # Save Tune's experiment state every second, so the interrupted state includes the running trial.
    env = dict(ray_env, TUNE_GLOBAL_CHECKPOINT_S="1")
    sweep = storage / "sweep"

    started = time.monotonic()
    with open(tmp_path / "first.log", "wb") as log:
        driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while not _interrupted(sweep):
                assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                assert time.monotonic() - started < 300, "no trial checkpoint within 300 s"
                time.sleep(0.5)
        finally:
            # The driver and the local Ray it started, like a lost head node or a killed terminal.
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()

    interrupted = time.monotonic()
    second = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    output = second.stdout + second.stderr
    (tmp_path / "second.log").write_text(output)
    assert second.returncode == 0, output[-5000:]
    assert f"resuming the sweep in {sweep}" in output
    assert "resumed after epoch" in output  # the interrupted trial's Train run continued from its checkpoint

    resumed = time.monotonic()
    report = json.loads((sweep / "best.json").read_text())
    trials = {t["trial_id"]: t for t in report["trials"]}
    assert len(trials) == 2
    fast, slow = sorted(trials.values(), key=lambda t: -t["sampled"]["train"]["learning_rate"])
    assert fast["sampled"]["train"]["learning_rate"] == 0.02 and fast["epochs"] == 4
    assert slow["epochs"] < 4, f"ASHA should have stopped the slow trial: {trials}"
    # Chosen by valid Recall@20, and the test figures come from that trial's best-valid epoch.
    assert report["best_trial"] == fast["trial_id"]
    assert report["best_score"] == pytest.approx(fast["best_valid/recall@20"])
    assert report["best_valid"]["recall@20"] == pytest.approx(report["best_score"])
    assert 0 < report["best_test"]["recall@20"] <= 1
    assert "| recall |" in (sweep / "best_results.md").read_text()

    best = load_config(str(sweep / "best_config.yaml"))
    assert best.train.learning_rate == 0.02 and best.run.name == "sweep-best" and best.scaling.address == ""
    rerun = subprocess.run([sys.executable, "trainer/main.py", "--config", str(sweep / "best_config.yaml"),
                            "--train.epochs=1"], cwd=REPO, env=ray_env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, (rerun.stdout + rerun.stderr)[-5000:]
    assert json.loads((storage / "sweep-best" / "metrics.json").read_text())["config"]["train"]["learning_rate"] == 0.02
    print(f"sweep test: killed after {interrupted - started:.0f} s, resumed sweep {resumed - interrupted:.0f} s, "
          f"best config trained again {time.monotonic() - resumed:.0f} s")


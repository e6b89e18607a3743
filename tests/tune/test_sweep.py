"""A real sweep through the README's command: 3 tiny trials, ASHA, a driver killed and resumed,
the best config written and trained again.

One test, because each step needs the previous one and every Ray start costs seconds here.
Why ASHA must stop the second and third trials: trials run one at a time
(`max_concurrent_trials: 1`, and the restored searcher state still counts the interrupted trial
as running, so it resumes before the second starts), and the random searcher's seed 1 samples
learning rate 0.02 first and 0.0002 second and third (seed 0 samples 0.0002 first). ASHA's rung records do not survive a driver restart
(Tune does not checkpoint scheduler state), but the first trial fills the rungs again as it
resumes (each result lands in the highest rung it has not yet filled), so the slow trials meet a
cutoff by epoch 4 and end before epoch 8. Small batches make epochs long enough (about 0.5 s
here) for the driver to be killed while the first trial still runs.

Each trial's worker reserves 60% of the CPUs Ray has: the third trial can only start if the CPUs
of the second, which ASHA stopped by killing it mid-run, were given back (Ray Train's
placement-group cleaner, which needs the dashboard's state API: see tune/main.py).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from trainer.config import load_config

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]

BASE = """\
run: {{name: sweep, storage_path: {storage}}}
data: {{url: {data}}}
model: {{name: lightgcn, num_layers: 1}}
train: {{epochs: 8, batch_size: 32, eval_every: 1, patience: 10}}
scaling: {{num_workers: 1}}
logging: {{progress: false}}
"""
SPACE = """\
train.learning_rate: {{choice: [0.02, 0.0002]}}
tune: {{num_samples: 3, scheduler: asha, grace_period: 1, reduction_factor: 2, seed: 1,
       max_concurrent_trials: 1, cpus_per_worker: {cpus}}}
"""


def _listeners(pgid: int) -> set[tuple[str, str, int]]:
    """(process, ip, port) of every listening socket in a process group."""
    found = set()
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid:
                found |= {(process.name(), c.laddr.ip, c.laddr.port) for c in process.net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN}
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def _interrupted(sweep: Path) -> bool:
    """True once a trial has a checkpoint and the saved experiment state knows that trial."""
    checkpoints = list(sweep.glob("trials/*/checkpoint_*/train_state.json"))
    states = sorted(sweep.glob("experiment_state-*.json"))
    return bool(checkpoints and states) and checkpoints[0].parts[-3] in states[-1].read_text()


def test_sweep_resumes_after_the_driver_dies_and_writes_a_runnable_best_config(tiny_dataset, ray_env, tmp_path: Path) -> None:
    storage = tmp_path / "sweeps"
    (tmp_path / "base.yaml").write_text(BASE.format(storage=storage, data=tiny_dataset))
    (tmp_path / "space.yaml").write_text(SPACE.format(cpus=round(0.6 * os.cpu_count(), 2)))
    command = [sys.executable, "tune/main.py", "--config", str(tmp_path / "base.yaml"), "--space", str(tmp_path / "space.yaml")]
    # Save Tune's experiment state every second, so the interrupted state includes the running
    # trial. Without the loopback switch: tune/main.py must keep the Ray it starts on loopback itself.
    env = dict(ray_env, TUNE_GLOBAL_CHECKPOINT_S="1")
    del env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"]
    sweep = storage / "sweep"

    started = time.monotonic()
    with open(tmp_path / "first.log", "wb") as log:
        driver = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while not _interrupted(sweep):
                assert driver.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
                assert time.monotonic() - started < 300, "no trial checkpoint within 300 s"
                time.sleep(0.1)
            listeners = _listeners(driver.pid)  # the sweep's own Ray (GCS, raylet, dashboard ...), mid-sweep
        finally:
            # The driver and the local Ray it started, like a lost head node or a killed terminal.
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
    assert any(name == "gcs_server" for name, *_ in listeners), listeners
    for name, ip, port in listeners:
        address = ipaddress.ip_address(ip)
        assert (getattr(address, "ipv4_mapped", None) or address).is_loopback, f"{name} listens on {ip}:{port}"

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
    assert len(trials) == 3
    fast, *slow = sorted(trials.values(), key=lambda t: -t["sampled"]["train"]["learning_rate"])
    assert fast["sampled"]["train"]["learning_rate"] == 0.02 and fast["epochs"] == 8
    assert all(1 <= t["epochs"] < 8 for t in slow), f"ASHA should have stopped both slow trials: {trials}"
    # Chosen by valid Recall@20, and the test figures come from that trial's best-valid epoch.
    assert report["best_trial"] == fast["trial_id"] and fast["best_score"] > max(t["best_score"] for t in slow)
    assert (sweep / "trials" / fast["trial_id"] / "metrics.json").exists()  # it ran to its end, not killed
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


"""The local multi-process cluster: loopback only, and jobs submitted the README's way.

Both jobs run the repository's own commands from an uploaded working directory, with `python`
resolved through the cluster's PATH: that it imports ray and torch shows it is the .venv's
interpreter (the machine's python3 has neither). The trainer job asks for 2 workers of 1 CPU on
a cluster of two 1-CPU nodes, so its process group spans both nodes.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.timeout(600)]


def _cluster_processes(state: dict) -> list[psutil.Process]:
    procs = []
    for pid in state["pids"]:
        root = psutil.Process(pid)
        procs += [root, *root.children(recursive=True)]
    return procs


def test_every_listener_is_on_loopback(local_cluster) -> None:
    procs = _cluster_processes(local_cluster)
    head = psutil.Process(local_cluster["pids"][0])
    # The switch that keeps Ray on 127.0.0.1 is internal to Ray: check it is what the nodes got.
    assert head.environ()["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert sum(p.name() == "raylet" for p in procs) == 2  # a head and a worker node
    listeners = {(p.pid, p.name(), c.laddr.ip, c.laddr.port) for p in procs
                 for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
    ports = {port for *_, port in listeners}
    assert int(local_cluster["gcs_address"].rsplit(":", 1)[1]) in ports
    assert int(local_cluster["dashboard"].rsplit(":", 1)[1]) in ports
    for pid, name, ip, port in listeners:
        address = ipaddress.ip_address(ip)
        address = getattr(address, "ipv4_mapped", None) or address  # ::ffff:127.0.0.1
        assert address.is_loopback, f"{name} (pid {pid}) listens on {ip}:{port}"


def test_trainer_job_writes_its_results_to_storage(local_cluster, cluster_dataset, tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    config = tmp_path / "job.yaml"
    config.write_text("run: {name: job}\nmodel: {name: lightgcn, num_layers: 1}\n"
                      "train: {epochs: 2, batch_size: 256}\nlogging: {progress: false}\n")
    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    result = subprocess.run(
        [ray_cli, "job", "submit", "--address", local_cluster["dashboard"], "--working-dir", ".", "--",
         "python", "trainer/main.py", "--config", str(config), "--scaling.address=auto",
         f"--data.url={cluster_dataset}", f"--run.storage_path={storage}",
         "--scaling.num_workers=2", "--scaling.cpus_per_worker=1"],
        cwd=REPO, env=local_cluster["env"], capture_output=True, text=True, timeout=500)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    metrics = json.loads((storage / "job" / "metrics.json").read_text())
    assert metrics["epoch"] == 2 and metrics["world_size"] == 2 and 0 < metrics["best_test"]["recall@20"] <= 1


def test_sweep_job_writes_results_and_its_log_to_storage(local_cluster, cluster_dataset, tmp_path: Path) -> None:
    storage = tmp_path / "runs"
    config, space = tmp_path / "base.yaml", tmp_path / "space.yaml"
    config.write_text("model: {name: lightgcn, num_layers: 1}\ntrain: {epochs: 2, batch_size: 256}\n"
                      "logging: {progress: false}\n")
    space.write_text("train.learning_rate: {choice: [0.01]}\ntune: {num_samples: 1, scheduler: none}\n")
    result = subprocess.run(
        [sys.executable, "cluster/submit.py", "--address", local_cluster["dashboard"], "--logs-to", str(storage / "jobs"),
         "--", "python", "tune/main.py", "--config", str(config), "--space", str(space), "--scaling.address=auto",
         f"--data.url={cluster_dataset}", f"--run.storage_path={storage}", "--run.name=sweep"],
        cwd=REPO, env=local_cluster["env"], capture_output=True, text=True, timeout=500)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    report = json.loads((storage / "sweep" / "best.json").read_text())
    assert report["sampled"] == {"train": {"learning_rate": 0.01}} and (storage / "sweep" / "best_config.yaml").exists()
    [log] = (storage / "jobs").glob("cimrec-*.log")
    assert report["best_trial"] in log.read_text()

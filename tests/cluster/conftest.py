"""Fixtures for cluster tests: one local multi-process cluster per module (the tiny dataset,
`cluster_dataset`, is in tests/conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
from ray_env import QUICK_RAY_ENV

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def local_cluster():
    """`python cluster/local.py start` (head + 1 worker node, 1 CPU each); stopped at the end.

    Its own short temp dir (Ray's socket paths must stay under 107 bytes) and a free dashboard
    port instead of 8265, so that it cannot collide with another Ray on the machine.
    """
    root = tempfile.mkdtemp(prefix="cimrec-c-", dir="/tmp")
    env = dict(os.environ, **QUICK_RAY_ENV)
    start = [sys.executable, "cluster/local.py", "start", "--temp-dir", root, "--dashboard-port", str(_free_port())]
    state_file = Path(root) / "cimrec-cluster.json"
    pids: list[int] = []
    try:
        subprocess.run(start, cwd=REPO, env=env, check=True, timeout=300)
        state = json.loads(state_file.read_text())
        pids = state["pids"]
        yield {**state, "env": env}
    finally:
        subprocess.run([sys.executable, "cluster/local.py", "stop", "--temp-dir", root], cwd=REPO, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
    # Every process the cluster started is gone (each node's process group is the node's own).
    leftovers = [p.pid for p in psutil.process_iter() if _in_groups(p, pids)]
    assert not leftovers, f"processes of the stopped cluster still running: {leftovers}"


def _in_groups(process: psutil.Process, groups: list[int]) -> bool:
    try:
        return os.getpgid(process.pid) in groups and process.status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.NoSuchProcess):
        return False

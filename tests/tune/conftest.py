"""Fixtures for sweep tests: the environment every Ray subprocess gets (the tiny dataset,
`tiny_dataset`, is in tests/conftest.py)."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest
from ray_env import QUICK_RAY_ENV


@pytest.fixture
def ray_env():
    """Environment for a CLI that starts its own Ray: loopback only, isolated temp dir, quick checks."""
    # A short path (Ray's socket paths must stay under 107 bytes) of this test's own, so that
    # no other Ray on the machine is found through /tmp/ray/ray_current_cluster.
    tmp = tempfile.mkdtemp(prefix="cimrec-t-", dir="/tmp")
    env = dict(os.environ, **QUICK_RAY_ENV, RAY_TMPDIR=tmp, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONUNBUFFERED="1")
    yield env
    shutil.rmtree(tmp, ignore_errors=True)

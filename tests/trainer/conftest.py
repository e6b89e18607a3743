"""Fixtures for tests that start Ray: one shared local Ray session, loopback only."""

from __future__ import annotations

import os

import pytest
from ray_env import QUICK_RAY_ENV


@pytest.fixture(scope="session")
def ray_session():
    """One Ray for the whole test run (ray.init costs seconds); shut down at the end."""
    for key, value in QUICK_RAY_ENV.items():
        os.environ.setdefault(key, value)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True)
    yield ray
    ray.shutdown()

"""Fixtures shared across test packages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory) -> str:
    """A small simulator dataset (400 users, 200 items, seed 0, with an unbiased_valid split), made
    once per session through the public CLI. Read-only for the tests; the trainer, tune and cluster tests all share it."""
    url = str(tmp_path_factory.mktemp("data") / "tiny")
    subprocess.run([sys.executable, "-m", "data_loaders.prepare", "--from", "synthetic", "--users", "400",
                    "--items", "200", "--seed", "0", "--unbiased-valid-per-user", "5", "--to", url], check=True, cwd=REPO)
    return url


@pytest.fixture(scope="session")
def tiny_dataset(tiny_synthetic: str) -> str:
    """`tiny_synthetic` under the name the sweep tests use."""
    return tiny_synthetic


@pytest.fixture(scope="session")
def cluster_dataset(tiny_synthetic: str) -> str:
    """`tiny_synthetic` under the name the cluster tests use."""
    return tiny_synthetic


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 for the session: (endpoint_url, s3fs storage_options).

    Tests create their own bucket. Never put region_name in client_kwargs: it breaks bucket
    creation against moto.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    yield endpoint, {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint}}
    server.stop()

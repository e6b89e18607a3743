"""Fixtures shared across test packages."""

from __future__ import annotations

import pytest


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

"""Reading from object storage when the store misbehaves: retries, permanent errors, no hang.

The S3 tests put a small fault-injecting HTTP proxy between s3fs and the moto server (both on
127.0.0.1): it answers chosen requests with an S3 error (503 SlowDown, 403 AccessDenied) or
drops the connection, and forwards the rest, so the real botocore / s3fs / retry stack is
exercised end to end. The retry and prefetch mechanics are also tested without any network.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import numpy as np
import pytest
import s3fs

from data_loaders.format import DatasetError
from data_loaders.writer import DatasetWriter
from data_loaders.storage import RetryPolicy, StorageError, is_transient, prefetch, retry
from data_loaders.stream import open_dataset

FAST = RetryPolicy(attempts=5, initial_delay=0.01, max_delay=0.05, deadline=30)


# ---- retry and prefetch, no network ------------------------------------------------------------

class Flaky:
    def __init__(self, failures: int, exc: BaseException) -> None:
        self.failures, self.exc, self.calls = failures, exc, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.exc
        return "ok"


def test_retry_succeeds_after_transient_failures() -> None:
    sleeps: list[float] = []
    op = Flaky(3, ConnectionResetError(104, "Connection reset by peer"))
    assert retry(op, url="s3://b/ds", what="reading x", policy=RetryPolicy(attempts=5), sleep=sleeps.append) == "ok"
    assert op.calls == 4 and len(sleeps) == 3
    # Exponential back-off with +-25% jitter: ~0.5, ~1, ~2 s.
    for wait, base in zip(sleeps, (0.5, 1.0, 2.0)):
        assert 0.75 * base <= wait <= 1.25 * base


@pytest.mark.parametrize("exc", [FileNotFoundError("no such key"), PermissionError("AccessDenied"),
                                 DatasetError("bad row", file="x"), ValueError("bad")])
def test_permanent_errors_are_not_retried(exc: BaseException) -> None:
    op = Flaky(10, exc)
    with pytest.raises(type(exc)):
        retry(op, url="s3://b/ds", what="reading x", sleep=lambda s: None)
    assert op.calls == 1


def test_gives_up_with_an_error_naming_url_and_file() -> None:
    op = Flaky(100, TimeoutError("timed out"))
    with pytest.raises(StorageError, match=r"s3://b/ds: reading interactions/part-00000.parquet failed after 3 attempt"):
        retry(op, url="s3://b/ds", what="reading interactions/part-00000.parquet", sleep=lambda s: None,
              policy=RetryPolicy(attempts=3))
    assert op.calls == 3
    # The deadline stops earlier than the attempt budget.
    op = Flaky(100, ConnectionError("refused"))
    started = time.monotonic()
    with pytest.raises(StorageError):
        retry(op, url="u", what="w", policy=RetryPolicy(attempts=100, initial_delay=0.05, max_delay=0.05, deadline=0.3))
    assert time.monotonic() - started < 1 and op.calls < 20


def test_classification_of_s3_errors() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
    from s3fs.errors import translate_boto_error

    def client_error(code: str, status: int) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code},
                            "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject")

    for code, status in [("SlowDown", 503), ("InternalError", 500), ("ServiceUnavailable", 503)]:
        assert is_transient(client_error(code, status))
        assert is_transient(translate_boto_error(client_error(code, status)))  # as s3fs raises it
    for code, status in [("NoSuchKey", 404), ("AccessDenied", 403), ("InvalidArgument", 400)]:
        assert not is_transient(client_error(code, status))
        assert not is_transient(translate_boto_error(client_error(code, status)))
    assert is_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert is_transient(ReadTimeoutError(endpoint_url="http://127.0.0.1:1"))
    assert not is_transient(StorageError("budget spent"))


def test_prefetch_is_bounded_propagates_errors_and_stops_early() -> None:
    produced: list[int] = []

    def source(n: int, fail_at: int | None = None):
        for i in range(n):
            if i == fail_at:
                raise ConnectionError("lost")
            produced.append(i)
            yield i

    it = prefetch(source(100), depth=2)
    assert next(it) == 0
    time.sleep(0.3)
    assert len(produced) <= 1 + 2 + 1  # consumed + queued + the one waiting to be queued
    it.close()  # the producer stops instead of reading the rest
    time.sleep(0.3)
    assert len(produced) <= 5
    assert list(prefetch(source(7), depth=3)) == list(range(7))
    with pytest.raises(ConnectionError, match="lost"):
        list(prefetch(source(10, fail_at=4), depth=2))


# ---- against S3 (moto) through a fault-injecting proxy --------------------------------------------

class FaultProxy:
    """HTTP proxy to the moto server that fails chosen requests.

    `inject(n, status, code, match)`: the next n requests whose path contains `match` get that
    S3 error (status None: the connection is dropped without an answer). `hits(match)` counts
    requests seen for a path.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = urlparse(upstream)
        self.rules: list[list] = []
        self.log: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                with proxy.lock:
                    proxy.log.append((self.command, self.path))
                    rule = next((r for r in proxy.rules if r[0] > 0 and r[3] in self.path), None)
                    if rule is not None:
                        rule[0] -= 1
                if rule is not None:
                    _, status, code, _ = rule
                    if status is None:
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    payload = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                               f"<Message>injected</Message></Error>").encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                conn = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection",)}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def inject(self, n: int, status: int | None, code: str = "", match: str = "") -> None:
        with self.lock:
            self.rules.append([n, status, code, match])

    def pending(self) -> int:
        with self.lock:
            return sum(r[0] for r in self.rules)

    def hits(self, match: str) -> int:
        with self.lock:
            return sum(1 for _, path in self.log if match in path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def s3_dataset(s3_server):
    """A dataset in a fresh bucket (written straight to moto) and the rows written."""
    _, options = s3_server
    bucket = f"stream-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(**options).mkdir(bucket)
    url = f"s3://{bucket}/ds"
    rng = np.random.default_rng(5)
    n, users, items = 600, 30, 40
    keys = rng.choice(users * items, size=n, replace=False)
    data = {"user_id": keys // items, "item_id": keys % items, "split": rng.choice(3, size=n).astype(np.int8)}
    with DatasetWriter(url, storage_options=options, rows_per_file=250, row_group_rows=100) as w:
        w.write_interactions(data)
        w.commit(name="flaky", num_users=users, num_items=items, source={})
    return url, data


@pytest.fixture
def proxy(s3_server):
    p = FaultProxy(s3_server[0])
    yield p
    p.close()


def _via(proxy: FaultProxy) -> dict:
    return {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": proxy.endpoint},
            "skip_instance_cache": True}


def test_s3_reads_retry_through_transient_errors(s3_dataset, proxy) -> None:
    url, data = s3_dataset
    # 503s on interaction files (more than botocore's own retries absorb) and a dropped connection.
    proxy.inject(3, 503, "SlowDown", match="/interactions/part-00001")
    proxy.inject(2, None, match="/interactions/part-00002")
    proxy.inject(2, 500, "InternalError", match="manifest.json")
    ds = open_dataset(url, storage_options=_via(proxy), retry_policy=FAST)
    got = ds.load_interactions()
    assert proxy.pending() == 0  # every injected failure was met, and survived
    np.testing.assert_array_equal(np.sort(got["user_id"] * 40 + got["item_id"]),
                                  np.sort(data["user_id"] * 40 + data["item_id"]))
    # Per-rank streams with prefetch, while row-group reads fail now and then.
    proxy.inject(4, 503, "SlowDown", match="/interactions/")
    rows = sum(b.num_rows for r in range(2) for b in ds.iter_interactions(rank=r, world_size=2, batch_rows=64))
    assert rows == len(data["user_id"]) and proxy.pending() == 0


def test_s3_permanent_errors_are_not_retried(s3_dataset, proxy) -> None:
    url, _ = s3_dataset
    proxy.inject(1, 403, "AccessDenied", match="manifest.json")
    with pytest.raises(PermissionError):
        open_dataset(url, storage_options=_via(proxy), retry_policy=FAST)
    assert proxy.hits("manifest.json") == 1
    with pytest.raises(DatasetError, match="no dataset at"):
        open_dataset(url + "-missing", storage_options=_via(proxy), retry_policy=FAST)
    assert proxy.hits("ds-missing/manifest.json") == 1  # a 404 is asked once


def test_unreachable_endpoint_fails_fast_with_a_clear_error() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    options = {"key": "k", "secret": "s", "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        open_dataset("s3://nowhere/ds", storage_options=options)  # default policy and timeouts
    elapsed = time.monotonic() - started
    assert elapsed < 60, elapsed
    message = str(err.value)
    assert "s3://nowhere/ds" in message and "manifest.json" in message and "attempt" in message
    assert "endpoint" in message

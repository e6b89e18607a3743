"""Talking to object storage: bounded retries, timeouts, and a bounded background prefetch.

Reads from a store can fail for a moment (a dropped connection, a 503 SlowDown, a timeout) or
for good (no such key, access denied, a bad endpoint). `retry()` repeats an operation on the
transient kind only, with exponential back-off and jitter, a bounded number of attempts and a
total deadline, and then raises a `StorageError` that names the URL and the file. Permanent
errors pass straight through on the first attempt.

`with_default_timeouts()` gives s3fs short connect/read timeouts and few botocore retries, so
an unreachable endpoint fails within seconds instead of botocore's minutes; every default
yields to a value the caller put in the storage options.

`prefetch()` runs a generator in a background thread, at most `depth` items ahead of the
consumer (memory stays bounded), and re-raises the producer's error in the consumer.
"""

from __future__ import annotations

import errno
import queue
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class StorageError(OSError):
    """A storage operation that still failed after the retry budget (or hit a non-retryable
    transport failure). The message names the URL, the file, the attempts and the last error."""

    def __reduce__(self):  # one message argument: survives pickling across Ray processes
        return (type(self), (str(self),))


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try a transient failure again."""

    attempts: int = 5            # total tries, the first included
    initial_delay: float = 0.5   # seconds before the second try; doubled each time
    max_delay: float = 8.0       # cap of one wait
    deadline: float = 90.0       # no new try that would (at the last try's pace) end past this

    def delay(self, retry_number: int) -> float:
        """Wait before retry `retry_number` (1-based): exponential, capped, with +-25% jitter."""
        base = min(self.max_delay, self.initial_delay * 2 ** (retry_number - 1))
        return base * random.uniform(0.75, 1.25)


DEFAULT_POLICY = RetryPolicy()

# errno values of a network or a busy/remote-failing store (s3fs maps HTTP 500 -> EREMOTEIO,
# 503/SlowDown/ServiceUnavailable -> EBUSY, unknown S3 codes -> EIO).
_TRANSIENT_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
                     errno.EPIPE, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.EAGAIN,
                     errno.EBUSY, errno.EIO, getattr(errno, "EREMOTEIO", 121)}
# S3 error codes worth another try (the HTTP status is checked too: any 5xx, 429 and 408).
_TRANSIENT_CODES = {"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                    "InternalError", "ServiceUnavailable", "RequestLimitExceeded", "BandwidthLimitExceeded"}
_PERMANENT = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def _transient_types() -> tuple[type, ...]:
    types: list[type] = [ConnectionError, TimeoutError, socket.timeout]
    try:
        from botocore.exceptions import ConnectionError as BotoConnectionError
        from botocore.exceptions import HTTPClientError

        types += [BotoConnectionError, HTTPClientError]  # endpoint refused/unreachable, timeouts, resets
    except ImportError:
        pass
    try:
        from aiohttp import ClientConnectionError, ClientPayloadError

        types += [ClientConnectionError, ClientPayloadError]
    except ImportError:
        pass
    try:
        from fsspec.exceptions import FSTimeoutError

        types.append(FSTimeoutError)
    except ImportError:
        pass
    return tuple(types)


_TRANSIENT_TYPES = _transient_types()


def _client_error_transient(exc: BaseException) -> bool | None:
    """For a botocore ClientError (or an error caused by one): is it a 5xx/throttle? None if not one."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in _TRANSIENT_CODES:
        return True
    if isinstance(status, int):
        return status >= 500 or status in (408, 429)
    return code.isdigit() and (int(code) >= 500 or int(code) in (408, 429))


def is_transient(exc: BaseException) -> bool:
    """True for errors another try may fix: connection and timeout errors, HTTP 5xx / 429 / 408.

    Never for a missing file, a permission problem, bad data (ValueError and subclasses such as
    DatasetError) or a StorageError (the budget is already spent).
    """
    if isinstance(exc, StorageError) or isinstance(exc, _PERMANENT) or isinstance(exc, ValueError):
        return False
    for candidate in (exc, exc.__cause__):
        if candidate is None:
            continue
        verdict = _client_error_transient(candidate)
        if verdict is not None:
            return verdict
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    cause = exc.__cause__
    return cause is not None and cause is not exc and isinstance(cause, _TRANSIENT_TYPES)


def retry(operation: Callable[[], T], *, url: str, what: str, policy: RetryPolicy | None = None,
          on_retry: Callable[[BaseException], None] | None = None,
          sleep: Callable[[float], None] = time.sleep) -> T:
    """`operation()`, tried again on transient errors (see `is_transient`) per `policy`.

    `url`, `what`: how the final error names the store and the file/operation. `on_retry` runs
    after each failed try (e.g. to drop a broken file handle) before the wait.
    """
    policy = policy or DEFAULT_POLICY
    started = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        tried = time.monotonic()
        try:
            return operation()
        except BaseException as exc:  # noqa: BLE001 - classified below, re-raised if permanent
            if not isinstance(exc, Exception) or not is_transient(exc):
                raise
            now = time.monotonic()
            elapsed, last = now - started, now - tried
            wait = policy.delay(attempt)
            # Another try is expected to take as long as this one (a timeout takes its full time).
            if attempt >= policy.attempts or elapsed + wait + last > policy.deadline:
                raise StorageError(
                    f"{url}: {what} failed after {attempt} attempt(s) over {elapsed:.1f}s; last error: "
                    f"{type(exc).__name__}: {exc}. The store may be unreachable or overloaded: check the "
                    "URL, the endpoint (storage_options client_kwargs.endpoint_url) and the network."
                ) from exc
            if on_retry is not None:
                on_retry(exc)
            sleep(wait)


# ---- timeouts for fsspec filesystems ---------------------------------------------------------

S3_CONFIG_DEFAULTS = {
    "connect_timeout": 5,    # seconds to open a connection (botocore's default is 60)
    "read_timeout": 15,      # seconds without a byte on an open connection (botocore: 60)
    # botocore's own retries: few, the caller's retry() does the rest with its deadline.
    "retries": {"max_attempts": 2, "mode": "standard"},
}
S3FS_RETRIES = 2  # s3fs's own loop over read timeouts / dropped payloads (its default is 5)


def with_default_timeouts(protocol: str | tuple | list, options: dict | None) -> dict:
    """`options` with short S3 timeouts and few botocore retries added (s3/s3a only).

    Any of these the caller set (in `config_kwargs`) wins. Other protocols are returned as given.
    """
    options = dict(options or {})
    protocols = {protocol} if isinstance(protocol, str) else set(protocol)
    if not protocols & {"s3", "s3a"}:
        return options
    config = dict(options.get("config_kwargs") or {})
    for key, value in S3_CONFIG_DEFAULTS.items():
        config.setdefault(key, value)
    options["config_kwargs"] = config
    return options


def tune_filesystem(fs) -> None:
    """Fewer s3fs-internal retries on an S3 filesystem (an attribute, not a storage option)."""
    if "s3" in getattr(fs, "protocol", ()) and getattr(fs, "retries", 0) > S3FS_RETRIES:
        fs.retries = S3FS_RETRIES


# ---- bounded background prefetch --------------------------------------------------------------

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(source: Iterator[T], depth: int) -> Iterator[T]:
    """Iterate `source` in a background thread, at most `depth` items ahead (depth <= 0: inline).

    The producer's exception is re-raised here. Closing this generator early stops the producer
    (it exits at its next item) and closes `source` in the producer's thread.
    """
    if depth <= 0:
        yield from source
        return
    items: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in source:
                if not put(item):
                    break
            else:
                put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            put(_Failure(exc))
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="cimrec-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)

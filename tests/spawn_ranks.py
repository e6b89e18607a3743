"""Run a test's worker function on N spawned gloo ranks, with a readable report when one crashes.

`torch.multiprocessing.spawn` reports a rank killed by a signal (a C++ abort inside gloo,
TorchRec or FBGEMM) only as "terminated with signal SIGABRT": the Python stack of the crash
and the rank's own stderr are lost in the captured output. Here every rank enables
`faulthandler` into a file of its own, and a crash raises with those stacks in the message.

A rank killed by a *signal* is retried once, with a warning that carries the first crash's
stacks: such aborts have been seen (once, in CI, on a loaded 2-core machine) in native code
that the test does not exercise on purpose, and the test is about the numbers the ranks
compute. A Python exception in a rank, or a second crash, fails the test.

The tests directory is on sys.path (pytest's rootdir conftest), so spawned ranks import this
module by name, like the test modules themselves.
"""

from __future__ import annotations

import faulthandler
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessExitedException


def _traced(rank: int, fn: Callable[..., None], trace_dir: str, args: tuple[Any, ...]) -> None:
    with open(os.path.join(trace_dir, f"rank{rank}.trace"), "w") as trace:
        faulthandler.enable(file=trace, all_threads=True)
        fn(rank, *args)


def _traces(trace_dir: str) -> str:
    parts = []
    for path in sorted(Path(trace_dir).glob("rank*.trace")):
        text = path.read_text(errors="replace").strip()
        parts.append(f"--- {path.stem} ---\n{text or '(no native crash recorded)'}")
    return "\n".join(parts)


def spawn_ranks(fn: Callable[..., None], args: tuple[Any, ...], nprocs: int = 2,
                init_file: str | None = None) -> None:
    """`mp.spawn(fn, args, nprocs)`; `init_file` (a file:// rendezvous) is removed before a retry."""
    for attempt in (1, 2):
        trace_dir = tempfile.mkdtemp(prefix="cimrec-ranks-")
        try:
            mp.spawn(_traced, args=(fn, trace_dir, args), nprocs=nprocs, join=True)
            return
        except ProcessExitedException as exc:
            report = f"{exc}\n{_traces(trace_dir)}"
            if exc.signal_name is None or attempt == 2:
                raise AssertionError(f"a rank died (attempt {attempt}):\n{report}") from exc
            warnings.warn(f"a rank was killed by a signal; retrying once:\n{report}", RuntimeWarning)
            if init_file and os.path.exists(init_file):
                os.remove(init_file)
        finally:
            shutil.rmtree(trace_dir, ignore_errors=True)

"""Write one benchmark's section into docs/BENCHMARKS.md (replace it in place, atomically).

Each script owns the section between `<!-- begin NAME -->` and `<!-- end NAME -->`, so running
one benchmark never clobbers another's figures.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

from trainer.report import write_section

DOC = Path(__file__).resolve().parents[1] / "docs" / "BENCHMARKS.md"
HEADER = "# Benchmarks\n\nEvery figure below is printed and recorded by a script in `benchmarks/`; the command is given with each table.\n"


def machine() -> str:
    """One line describing where the figures were measured."""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or "unknown CPU"
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=DOC.parent).stdout.strip() or "?"
    load = os.getloadavg()[0]  # other work on the machine slows every figure: say how much there was
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, no GPU, load average {load:.1f} at the end, commit {commit}"


def record_section(name: str, markdown: str) -> None:
    # The marker replacement is trainer/report.py's, shared with the docs/RESULTS.md tables.
    write_section(str(DOC), name, markdown, header=HEADER)

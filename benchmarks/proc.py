"""Every running process's `/proc/PID/stat`, for the benchmarks that add up CPU time by process."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
"""Clock ticks per second, the unit of the CPU times in `/proc/PID/stat`."""


def process_stats() -> Iterator[list[str]]:
    """The fields after the command name of each running process's stat line (state, ppid, pgrp, session,
    tty, tpgid, flags, ..., utime at 11, stime at 12, cutime, cstime); a process that ended meanwhile is
    skipped."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            yield (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue

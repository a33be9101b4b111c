"""Benchmark processors: the seed's trivial one, remembering which items this process executed.

`FANOUT_BENCH_CRASH_AFTER=<n>` makes the process SIGKILL its own process group once it has
executed `n` items, as a host dying mid-run would: at exactly that point, however busy the
machine is (a watcher polling from outside fired late when a run took 1.5 s).
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time

from fanout.engine.processor import processed

EXECUTED: list[str] = []
WAIT_SECONDS = 0.005
_lock = threading.Lock()


@functools.cache
def crash_after() -> int | None:
    value = os.environ.get("FANOUT_BENCH_CRASH_AFTER")
    return int(value) if value else None


def recorded(item: str) -> str:
    """`Processed <item>`, noting the item so a benchmark can tell what ran again after a crash."""
    with _lock:
        EXECUTED.append(item)
        if len(EXECUTED) == crash_after():
            os.killpg(os.getpgid(0), signal.SIGKILL)
    return processed(item)


def waiting(item: str) -> str:
    """`recorded`, after waiting 5 ms as an item that calls another service would: a run whose
    item work outweighs Prefect's fixed cost per run, so resume and rerun costs show what they are."""
    time.sleep(WAIT_SECONDS)
    return recorded(item)


def failing_one_in_a_hundred(item: str) -> str:
    """The seed's processor, but item-1, item-101, item-201, ... fail for good: 1% of a run's items,
    evenly spread, so a run has a failure report to measure."""
    number = item.rpartition("-")[2]
    if number.isdigit() and int(number) % 100 == 1:
        raise ValueError(f"{item} is broken")
    return processed(item)


BURN_STEPS = 500_000
"""Loop steps of `burning`: about 25 ms of one core on these machines."""


def burning(item: str) -> str:
    """`Processed <item>` after about 25 ms of pure-Python arithmetic: a CPU-bound item that holds the GIL."""
    total = 0
    for step in range(BURN_STEPS):
        total = (total * 31 + step) % 1_000_003
    return processed(item)

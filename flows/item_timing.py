"""How long each item's attempts took, measured where the item runs, for the end-of-run report.

A per-item task's return value *is* its checkpoint, so timing cannot travel in
it without changing what is stored. Instead the task records its attempts here,
in the process that runs it, and the flow collects the records once its futures
are done. The thread task runner runs tasks in the flow's process, so every
record is found; a task runner that runs tasks elsewhere leaves the flow with
no record, and the report then shows the duration as unknown rather than a guess.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from flows.outcome import ItemOutcome


@dataclass
class ItemTiming:
    """Attempts made on one item in this process, and their total time."""

    attempts: int = 0
    seconds: float = 0.0


_lock = threading.Lock()
_records: dict[tuple[str, str], ItemTiming] = {}


@contextmanager
def timed_attempt(instance_id: str, item: str, attempt: int) -> Iterator[None]:
    """Time one attempt of `item`; the record keeps the highest attempt number seen."""
    started = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - started
        with _lock:
            record = _records.setdefault((instance_id, item), ItemTiming())
            record.attempts = max(record.attempts, attempt)
            record.seconds += elapsed


def collect(instance_id: str, items: Iterable[str]) -> dict[str, ItemTiming]:
    """Take (and forget) the records of `items`, so a long-lived worker does not accumulate them."""
    with _lock:
        return {
            item: record
            for item in items
            if (record := _records.pop((instance_id, item), None)) is not None
        }


def with_timing(outcome: ItemOutcome, timing: ItemTiming | None) -> ItemOutcome:
    """`outcome` with the attempts and time measured for it, when there is a record."""
    if timing is None:
        return outcome
    return replace(outcome, attempts=timing.attempts, duration=timing.seconds)

"""How many items go in one task run.

Each task run costs about 10 ms of the flow process's time and a handful of
events the server has to store, whatever it holds; items vary from microseconds
to minutes. So automatic batches are cut to the pace measured in the run itself:

1. a first wave gives every parallel slot one small batch;
2. when the first of those finishes, its items' processor time gives the pace,
   and the rest of the items is cut into batches a slot gets through in about
   `TARGET_BATCH_SECONDS`, but no larger than an even share per slot (so every
   slot has work until the end) and than `MAX_AUTO_BATCH`.

Fast items end up in one batch per slot (10,000 trivial items: 16 task runs
instead of 32); slow items in batches of about a second each, so a slot that
finishes early always finds another batch to take.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from flows.outcome import ItemOutcome
from flows.settings import FanoutSettings

BATCHES_PER_SLOT = 4
FIRST_WAVE_MAX = 50
TARGET_BATCH_SECONDS = 1.0
MAX_AUTO_BATCH = 5000


def batch_size_for(total: int, settings: FanoutSettings) -> int:
    """Items per task run of the first wave: 1 for small runs (one task run per item in the UI).

    With `batch_size` set, every batch has that size; automatic first batches give
    each slot a share of `BATCHES_PER_SLOT` per slot, at most `FIRST_WAVE_MAX` items.
    """
    if settings.batch_size:
        return settings.batch_size
    if total <= settings.per_item_task_limit:
        return 1
    per_slot = math.ceil(total / (settings.max_parallel * BATCHES_PER_SLOT))
    return max(1, min(FIRST_WAVE_MAX, per_slot))


def split(items: list[str], size: int) -> list[list[str]]:
    """`items` in consecutive batches of at most `size`."""
    return [items[start : start + size] for start in range(0, len(items), size)]


class BatchPlan:
    """Hands out a run's batches: the first wave now, the rest once the pace is known."""

    def __init__(self, items: list[str], settings: FanoutSettings) -> None:
        self._items = items
        self._slots = settings.max_parallel
        self._fixed = settings.batch_size or None
        self._first_size = batch_size_for(len(items), settings)
        self._cursor = 0

    @property
    def planned(self) -> bool:
        """True once every item is in a batch handed out."""
        return self._cursor >= len(self._items)

    def first_wave(self) -> list[list[str]]:
        """One batch per slot (every batch, with a fixed `batch_size`)."""
        count = None if self._fixed else self._first_size * self._slots
        return self._take(self._first_size, count)

    def rest(self, finished: Sequence[ItemOutcome]) -> list[list[str]]:
        """Every remaining item, in batches cut to the pace of the `finished` outcomes."""
        return self._take(self.rest_size(finished))

    def rest_size(self, finished: Sequence[ItemOutcome]) -> int:
        """The batch size for the remaining items, given a finished batch's outcomes."""
        remaining = len(self._items) - self._cursor
        if remaining <= 0:
            return 1
        even = math.ceil(remaining / self._slots)
        timed = [outcome.duration for outcome in finished if outcome.duration is not None]
        spent = sum(timed)
        paced = math.ceil(len(timed) * TARGET_BATCH_SECONDS / spent) if timed and spent > 0 else even
        return max(1, min(even, paced, MAX_AUTO_BATCH))

    def _take(self, size: int, count: int | None = None) -> list[list[str]]:
        end = len(self._items) if count is None else min(len(self._items), self._cursor + count)
        batches = split(self._items[self._cursor : end], size)
        self._cursor = end
        return batches

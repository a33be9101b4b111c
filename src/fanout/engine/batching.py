"""How many items go in one task run.

Each task run costs about 10 ms of the flow process's time and a handful of
events the server has to store, whatever it holds; items vary from microseconds
to minutes. So automatic batches are cut to the pace measured in the run itself:

1. one small batch goes first; if it has not finished within
   `PROBE_WAIT_SECONDS`, every other slot gets a small batch too (the items are
   slow, and no slot should idle while the pace is measured);
2. the first small batch to finish gives the pace (its items' processor time),
   and the rest of the items is cut into batches a slot gets through in about
   `TARGET_BATCH_SECONDS`, and no larger than an even share over as many slots
   as get at least `SPLIT_SECONDS` of processor time each (every slot, for any
   sizeable work). Threads share one interpreter lock, so splitting a tiny rest
   gains nothing and costs much: 10,000 trivial items took 0.2 s in one thread
   and 0.57 s in eight, which hand the lock over at every checkpoint write.

3. on threads, items that kept the flow process computing while the first
   batches ran are CPU-bound (src/fanout/engine/cpu_bound.py). Threads running
   them take turns at the interpreter lock, so the widened first batches and the
   rest are cut for only as many slots as the host has cores: the rest goes to
   worker processes, one per core, or stays on that many threads.

Trivial items run in one or two batches after the first (10,000: 3 task runs);
slow items in batches of about a second each on every slot, so a slot that
finishes early always finds another batch to take.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fanout.core.outcome import ItemOutcome
from fanout.core.settings import FlowSettings

BATCHES_PER_SLOT = 4
FIRST_WAVE_MAX = 50
TARGET_BATCH_SECONDS = 1.0
PROBE_WAIT_SECONDS = 0.25
SPLIT_SECONDS = 0.25
MAX_AUTO_BATCH = 50_000


def batch_size_for(total: int, settings: FlowSettings) -> int:
    """Items in each of a run's first batches: 1 for small runs (one task run per item in the UI).

    With `batch_size` set, every batch has that size; otherwise the first batches
    hold a `BATCHES_PER_SLOT`-th of a slot's even share, at most `FIRST_WAVE_MAX`
    items, so they measure the pace without holding a slot long.
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
    """Hands out a run's batches: one first, more small ones if it is slow, the rest once the pace is known."""

    def __init__(self, items: list[str], settings: FlowSettings) -> None:
        self._items = items
        self._slots = settings.max_parallel
        self._first_size = batch_size_for(len(items), settings)
        # One item per task run (small runs) is a fixed size too: every item is submitted at once.
        self._fixed = settings.batch_size or (1 if self._first_size == 1 else None)
        self._cursor = 0
        self.widened = self._fixed is not None

    @property
    def one_per_task(self) -> bool:
        """True when every task run holds one item (named by it in the UI)."""
        return self._fixed == 1

    @property
    def planned(self) -> bool:
        """True once every item is in a batch handed out."""
        return self._cursor >= len(self._items)

    def opening(self) -> list[list[str]]:
        """The first batch (every batch, with a fixed `batch_size`)."""
        return self._take(self._first_size, None if self._fixed else self._first_size)

    def widen(self, slots: int | None = None) -> list[list[str]]:
        """One small batch for every other slot (of `slots`, when fewer): the first is taking long."""
        self.widened = True
        wide = self._slots if slots is None else max(1, min(self._slots, slots))
        return self._take(self._first_size, self._first_size * (wide - 1))

    @property
    def remaining(self) -> int:
        """Items not yet in a batch handed out."""
        return len(self._items) - self._cursor

    def rest(self, finished: Sequence[ItemOutcome], slots: int | None = None) -> list[list[str]]:
        """Every remaining item, in batches cut to the pace of the `finished` outcomes, for `slots`
        batches at a time (all the plan's slots unless fewer are given)."""
        self.widened = True
        if slots is not None:
            self._slots = max(1, min(self._slots, slots))
        return self._take(self.rest_size(finished))

    def rest_size(self, finished: Sequence[ItemOutcome]) -> int:
        """The batch size for the remaining items, given a finished batch's outcomes."""
        remaining = len(self._items) - self._cursor
        if remaining <= 0:
            return 1
        timed = [outcome.duration for outcome in finished if outcome.duration is not None]
        spent = sum(timed)
        if not timed or spent <= 0:
            return max(1, min(math.ceil(remaining / self._slots), MAX_AUTO_BATCH))
        per_item = spent / len(timed)
        slots = max(1, min(self._slots, math.ceil(remaining * per_item / SPLIT_SECONDS)))
        paced = math.ceil(TARGET_BATCH_SECONDS / per_item)
        largest = max(1, min(math.ceil(remaining / slots), paced, MAX_AUTO_BATCH))
        # Whole rounds: as many batches as a multiple of the slots, so no slot runs a last one alone.
        rounds = math.ceil(math.ceil(remaining / largest) / slots)
        return math.ceil(remaining / (rounds * slots))

    def _take(self, size: int, count: int | None = None) -> list[list[str]]:
        end = len(self._items) if count is None else min(len(self._items), self._cursor + count)
        batches = split(self._items[self._cursor : end], size)
        self._cursor = end
        return batches

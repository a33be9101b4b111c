"""How many items go in one task run."""

from __future__ import annotations

import math

from flows.settings import FanoutSettings

BATCHES_PER_SLOT = 4
MAX_AUTO_BATCH = 1000


def batch_size_for(total: int, settings: FanoutSettings) -> int:
    """Items per task run: 1 for small runs (one task run per item in the UI), else batches.

    Automatic batches give every parallel slot about `BATCHES_PER_SLOT` batches,
    so slots stay busy when batches take uneven time, and no more than
    `MAX_AUTO_BATCH` items, so a retried batch repeats little bookkeeping.
    """
    if settings.batch_size:
        return settings.batch_size
    if total <= settings.per_item_task_limit:
        return 1
    per_slot = math.ceil(total / (settings.max_parallel * BATCHES_PER_SLOT))
    return max(1, min(MAX_AUTO_BATCH, per_slot))


def split(items: list[str], size: int) -> list[list[str]]:
    """`items` in consecutive batches of at most `size`."""
    return [items[start : start + size] for start in range(0, len(items), size)]

"""Batch sizes: one task run per item for small runs; batches cut to the measured pace for large ones."""

from __future__ import annotations

from flows.batching import MAX_AUTO_BATCH, BatchPlan, batch_size_for
from flows.outcome import ItemOutcome
from flows.settings import FanoutSettings


def settings(**values: object) -> FanoutSettings:
    return FanoutSettings(_env_file=None, **values)  # type: ignore[arg-type]


def items(count: int) -> list[str]:
    return [f"item-{i}" for i in range(1, count + 1)]


def timed(count: int, seconds: float) -> list[ItemOutcome]:
    return [ItemOutcome(item=f"t{i}", value=i, attempts=1, duration=seconds) for i in range(count)]


def test_small_runs_get_one_task_per_item() -> None:
    """Up to `per_item_task_limit` items, each item is its own task run."""
    assert batch_size_for(5, settings()) == 1


def test_the_first_wave_gives_every_slot_one_small_batch() -> None:
    """Before the pace is known, each slot gets one batch, so slow items cannot hold a slot for long."""
    plan = BatchPlan(items(10_000), settings(max_parallel=8))
    wave = plan.first_wave()
    assert len(wave) == 8 and all(1 < len(batch) <= 50 for batch in wave)
    assert not plan.planned


def test_fast_items_get_one_batch_per_slot() -> None:
    """Items of microseconds: the rest is shared evenly, one batch per slot."""
    plan = BatchPlan(items(10_000), settings(max_parallel=8))
    first = plan.first_wave()
    rest = plan.rest(timed(50, 0.00001))
    assert len(rest) == 8 and plan.planned
    assert [item for batch in first + rest for item in batch] == items(10_000)


def test_slow_items_get_batches_of_about_a_second() -> None:
    """Items of 0.1 s: batches of ten, so a slot that finishes early finds more work."""
    plan = BatchPlan(items(1_000), settings(max_parallel=8))
    plan.first_wave()
    sizes = [len(batch) for batch in plan.rest(timed(8, 0.1))]
    assert set(sizes[:-1]) == {10} and sizes[-1] <= 10


def test_no_automatic_batch_exceeds_the_cap() -> None:
    """A huge run of fast items is cut at `MAX_AUTO_BATCH` items per task run."""
    plan = BatchPlan(items(100_000), settings(max_parallel=2))
    plan.first_wave()
    assert max(len(batch) for batch in plan.rest(timed(50, 0.00001))) == MAX_AUTO_BATCH


def test_a_fixed_batch_size_is_kept_for_every_batch() -> None:
    """With `batch_size` set, every batch is handed out at once, at that size."""
    plan = BatchPlan(items(1_000), settings(batch_size=300))
    assert [len(batch) for batch in plan.first_wave()] == [300, 300, 300, 100]
    assert plan.planned


def test_a_batch_without_timings_shares_the_rest_evenly() -> None:
    """A first batch that failed as a whole (no durations) still leaves a sensible plan."""
    plan = BatchPlan(items(1_000), settings(max_parallel=4))
    plan.first_wave()
    assert len(plan.rest([ItemOutcome(item="x", error="boom")])) == 4

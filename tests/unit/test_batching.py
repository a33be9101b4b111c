"""Batch sizes: one task run per item for small runs; batches cut to the measured pace for large ones."""

from __future__ import annotations

from fanout.core.outcome import ItemOutcome
from fanout.core.settings import FanoutSettings
from fanout.engine.batching import BatchPlan, batch_size_for


def settings(**values: object) -> FanoutSettings:
    return FanoutSettings(_env_file=None, **values)  # type: ignore[arg-type]


def items(count: int) -> list[str]:
    return [f"item-{i}" for i in range(1, count + 1)]


def timed(count: int, seconds: float) -> list[ItemOutcome]:
    return [ItemOutcome(item=f"t{i}", value=i, attempts=1, duration=seconds) for i in range(count)]


def handed_out(*waves: list[list[str]]) -> list[str]:
    return [item for wave in waves for batch in wave for item in batch]


def test_small_runs_get_one_task_per_item() -> None:
    """Up to `per_item_task_limit` items, each item is its own task run."""
    assert batch_size_for(5, settings()) == 1


def test_one_small_batch_goes_first() -> None:
    """Before the pace is known, a single batch of at most 50 items runs."""
    plan = BatchPlan(items(10_000), settings(max_parallel=8))
    opening = plan.opening()
    assert len(opening) == 1 and 1 < len(opening[0]) <= 50 and not plan.widened


def test_a_slow_first_batch_widens_to_every_slot() -> None:
    """When the first batch takes long, every other slot gets a small batch too."""
    plan = BatchPlan(items(10_000), settings(max_parallel=8))
    opening, more = plan.opening(), plan.widen()
    assert len(more) == 7 and {len(batch) for batch in more} == {len(opening[0])} and plan.widened


def test_trivial_items_run_in_one_batch_after_the_first() -> None:
    """Items of microseconds: splitting them over threads would only add lock hand-overs."""
    plan = BatchPlan(items(10_000), settings(max_parallel=8))
    opening = plan.opening()
    rest = plan.rest(timed(50, 0.000005))
    assert len(rest) == 1 and plan.planned
    assert handed_out(opening, rest) == items(10_000)


def test_waiting_items_are_shared_by_every_slot() -> None:
    """Items of 1 ms (say, a call to a service): the rest goes to all eight slots."""
    plan = BatchPlan(items(10_000), settings(max_parallel=8))
    opening = plan.opening()
    rest = plan.rest(timed(50, 0.001))
    assert len(rest) >= 8 and max(len(batch) for batch in rest) <= 1000
    assert handed_out(opening, rest) == items(10_000)


def test_slow_items_get_batches_of_about_a_second() -> None:
    """Items of 0.1 s: batches of ten, so a slot that finishes early finds more work."""
    plan = BatchPlan(items(1_000), settings(max_parallel=8))
    plan.opening()
    plan.widen()
    sizes = [len(batch) for batch in plan.rest(timed(8, 0.1))]
    assert set(sizes[:-1]) == {10} and sizes[-1] <= 10


def test_a_fixed_batch_size_is_kept_for_every_batch() -> None:
    """With `batch_size` set, every batch is handed out at once, at that size."""
    plan = BatchPlan(items(1_000), settings(batch_size=300))
    assert [len(batch) for batch in plan.opening()] == [300, 300, 300, 100]
    assert plan.planned and plan.widened


def test_a_batch_without_timings_shares_the_rest_evenly() -> None:
    """A first batch that failed as a whole (no durations) leaves every slot a share."""
    plan = BatchPlan(items(1_000), settings(max_parallel=4))
    plan.opening()
    assert len(plan.rest([ItemOutcome(item="x", error="boom")])) == 4


def test_fewer_slots_for_the_rest_cut_it_for_that_many() -> None:
    """CPU-bound items get the rest in batches for as many slots as cores, in whole rounds of them."""
    plan = BatchPlan([f"i{n}" for n in range(1000)], settings(max_parallel=8))
    plan.opening()
    rest = plan.rest([ItemOutcome(item="i0", value=1, duration=0.025)], slots=2)
    assert len(rest) % 2 == 0 and max(len(batch) for batch in rest) <= 40


def test_a_widened_first_wave_of_computing_items_takes_only_a_core_worth_of_slots() -> None:
    """Widened for two slots of eight, the first wave is the first batch and one more of its size."""
    plan = BatchPlan(items(10_000), settings(max_parallel=8))
    [first] = plan.opening()
    wave = plan.widen(slots=2)
    assert [len(batch) for batch in wave] == [len(first)] and plan.remaining == 10_000 - 2 * len(first)

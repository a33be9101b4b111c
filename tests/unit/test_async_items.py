"""Async processors: bounded in-flight items on one loop, retries of transient errors, JSON results."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from flows.async_items import AsyncPolicy, run_async_items
from flows.errors import TransientError
from flows.item_context import current_item
from flows.outcome import ItemOutcome


class InFlight:
    """Records how many calls are in flight at once."""

    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    async def __call__(self, item: Any) -> Any:
        self.now += 1
        self.peak = max(self.peak, self.now)
        await asyncio.sleep(0.001)
        self.now -= 1
        return {"doubled": item * 2}


def pairs(n: int) -> list[tuple[str, Any]]:
    return [(f"item-{index}", index) for index in range(n)]


def test_every_item_gets_its_result() -> None:
    """Each item's outcome holds the awaited result."""
    outcomes = run_async_items(InFlight(), pairs(50), AsyncPolicy("inst"), max_parallel=8)
    assert sorted((outcome.item, outcome.value["doubled"]) for outcome in outcomes) == sorted(
        (f"item-{index}", index * 2) for index in range(50)
    )


def test_in_flight_items_never_exceed_max_parallel() -> None:
    """At most `max_parallel` items are awaited at once, and that many are reached."""
    recorder = InFlight()
    run_async_items(recorder, pairs(200), AsyncPolicy("inst"), max_parallel=25)
    assert recorder.peak == 25


def test_transient_errors_are_retried_then_succeed() -> None:
    """A transient failure is retried and the result kept, with the attempts counted."""
    calls: dict[str, int] = {}

    async def flaky(item: Any) -> Any:
        key = current_item().item
        calls[key] = calls.get(key, 0) + 1
        if calls[key] < 3:
            raise TransientError("try again")
        return item

    outcomes = run_async_items(flaky, pairs(3), AsyncPolicy("inst", delays=[0, 0, 0]), max_parallel=3)
    assert all(outcome.ok and outcome.attempts == 3 for outcome in outcomes)


def test_retries_stop_after_the_policy_runs_out() -> None:
    """A transient failure past the last retry fails the item with its last error."""

    async def always(item: Any) -> Any:
        raise ConnectionError("refused")

    [outcome] = run_async_items(always, pairs(1), AsyncPolicy("inst", delays=[0, 0]), max_parallel=1)
    assert outcome.error == "ConnectionError: refused" and outcome.attempts == 3


def test_other_errors_are_not_retried() -> None:
    """A non-transient error fails the item at once, and its siblings still finish."""

    async def picky(item: Any) -> Any:
        if item == 1:
            raise ValueError("bad item")
        return item

    outcomes = {outcome.item: outcome for outcome in run_async_items(picky, pairs(3), AsyncPolicy("i", [0]), 2)}
    assert outcomes["item-1"].error == "ValueError: bad item" and outcomes["item-1"].attempts == 1
    assert outcomes["item-0"].ok and outcomes["item-2"].ok


def test_result_that_is_not_json_fails_the_item() -> None:
    """An async processor returning a set fails that item with a clear error, not retried."""

    async def sets(item: Any) -> Any:
        return {item}

    [outcome] = run_async_items(sets, pairs(1), AsyncPolicy("inst", [0, 0]), 1)
    assert outcome.error is not None and "ResultNotJson" in outcome.error and outcome.attempts == 1


def test_each_attempt_sees_its_own_item_context() -> None:
    """`current_item()` names the item and attempt inside concurrent calls."""

    async def who(item: Any) -> Any:
        await asyncio.sleep(0)
        context = current_item()
        return [context.item, context.idempotency_key]

    outcomes = run_async_items(who, pairs(20), AsyncPolicy("inst"), 20)
    assert all(outcome.value == [outcome.item, f"inst/{outcome.item}"] for outcome in outcomes)


def test_on_outcome_is_called_as_each_item_settles() -> None:
    """The caller hears of each item as it finishes (to checkpoint it at once)."""
    heard: list[ItemOutcome] = []
    outcomes = run_async_items(InFlight(), pairs(10), AsyncPolicy("inst"), 4, on_outcome=heard.append)
    assert heard == outcomes


def test_runs_from_inside_a_running_loop() -> None:
    """Called from code that already runs a loop, the items run on a loop of their own."""

    async def caller() -> list[ItemOutcome]:
        return run_async_items(InFlight(), pairs(5), AsyncPolicy("inst"), 5)

    assert len(asyncio.run(caller())) == 5


def test_pending_items_are_pulled_lazily() -> None:
    """Items are taken from the iterator as slots free up, never more than `max_parallel` ahead."""
    taken: list[int] = []
    done: list[int] = []
    ahead: list[int] = []

    def lazily() -> Any:
        for key, item in pairs(100):
            taken.append(item)
            yield key, item

    async def note(item: Any) -> Any:
        ahead.append(len(taken) - len(done))
        await asyncio.sleep(0.001)
        done.append(item)
        return item

    run_async_items(note, lazily(), AsyncPolicy("inst"), 10)
    assert max(ahead) == 10 and len(done) == 100


@pytest.mark.parametrize("max_parallel", [1, 10_000])
def test_max_parallel_bounds_accepted(max_parallel: int) -> None:
    """One item in flight and ten thousand both work."""
    assert len(run_async_items(InFlight(), pairs(30), AsyncPolicy("inst"), max_parallel)) == 30

"""Async processors: bounded in-flight items on one loop, retries of transient errors, JSON results."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path
from typing import Any

import pytest
from prefect.filesystems import LocalFileSystem

from fanout.core.errors import TransientError
from fanout.core.item_context import current_item
from fanout.core.outcome import ItemOutcome
from fanout.core.settings import get_settings
from fanout.engine import async_items
from fanout.engine.async_items import carry_async, submission_settings
from fanout.engine.item_path import ItemRun, checkpoint
from fanout.engine.progress import ItemTally
from fanout.engine.retry_policy import RetryPolicy
from fanout.inputs.items import ItemValues
from fanout.storage.checkpoints import CheckpointStore


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


VALUES = ItemValues({f"item-{index}": index for index in range(200)})


def pairs(n: int) -> list[str]:
    """Item keys whose values (in `VALUES`) are their numbers."""
    return [f"item-{index}" for index in range(n)]


def run_async_items(*args: Any, **kwargs: Any) -> list[ItemOutcome]:
    """`fanout.engine.async_items.run_async_items` over `VALUES`."""
    return async_items.run_async_items(*args, values=VALUES, **kwargs)


def item_run(tmp_path: Path, retries: int = 0, max_parallel: int = 2) -> ItemRun:
    storage = LocalFileSystem(basepath=str(tmp_path))
    return ItemRun("inst", "tests:sets", storage, policy(retries), max_parallel=max_parallel, values=VALUES)


def policy(retries: int = 0) -> RetryPolicy:
    return RetryPolicy(retries=retries, delay_seconds=0, jitter_factor=0)


def test_every_item_gets_its_result() -> None:
    """Each item's outcome holds the awaited result."""
    outcomes = run_async_items(InFlight(), pairs(50), policy(), "inst", max_parallel=8)
    assert sorted((outcome.item, outcome.value["doubled"]) for outcome in outcomes) == sorted(
        (f"item-{index}", index * 2) for index in range(50)
    )


def test_in_flight_items_never_exceed_max_parallel() -> None:
    """At most `max_parallel` items are awaited at once, and that many are reached."""
    recorder = InFlight()
    run_async_items(recorder, pairs(200), policy(), "inst", max_parallel=25)
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

    outcomes = run_async_items(flaky, pairs(3), policy(3), "inst", max_parallel=3)
    assert all(outcome.ok and outcome.attempts == 3 for outcome in outcomes)


def test_retries_stop_after_the_policy_runs_out() -> None:
    """A transient failure past the last retry fails the item with its last error."""

    async def always(item: Any) -> Any:
        raise ConnectionError("refused")

    [outcome] = run_async_items(always, pairs(1), policy(2), "inst", max_parallel=1)
    assert outcome.error == "ConnectionError: refused" and outcome.attempts == 3


def test_other_errors_are_not_retried() -> None:
    """A non-transient error fails the item at once, and its siblings still finish."""

    async def picky(item: Any) -> Any:
        if item == 1:
            raise ValueError("bad item")
        return item

    outcomes = {outcome.item: outcome for outcome in run_async_items(picky, pairs(3), policy(1), "i", 2)}
    assert outcomes["item-1"].error == "ValueError: bad item" and outcomes["item-1"].attempts == 1
    assert outcomes["item-0"].ok and outcomes["item-2"].ok


def test_result_that_is_not_json_fails_the_item(tmp_path: Path) -> None:
    """An async processor returning a set fails that item with a clear error, is not retried, and the
    other items are checkpointed."""

    async def sets(item: Any) -> Any:
        return {item} if item == 0 else item

    store = CheckpointStore(LocalFileSystem(basepath=str(tmp_path)), "inst", "tests:sets")
    with store.journal("batch") as journal:
        outcomes = carry_async(
            sets, pairs(2), {}, item_run(tmp_path, 2), functools.partial(checkpoint, journal), ItemTally()
        )
    assert outcomes[0].error is not None and "not JSON" in outcomes[0].error and outcomes[0].attempts == 1
    assert store.load(["item-1"]) == {"item-1": 1}


def test_checkpointed_items_are_not_run_again(tmp_path: Path) -> None:
    """Items found in checkpoints come back cached, in item order, without a call."""
    called: list[Any] = []

    async def note(item: Any) -> Any:
        called.append(item)
        return item

    items = pairs(3)
    outcomes = carry_async(note, items, {"item-1": 1}, item_run(tmp_path, 0, 3), lambda item, value: None, ItemTally())
    assert [outcome.item for outcome in outcomes] == ["item-0", "item-1", "item-2"]
    assert outcomes[1].cached and sorted(called) == [0, 2]


def test_each_attempt_sees_its_own_item_context() -> None:
    """`current_item()` names the item and attempt inside concurrent calls."""

    async def who(item: Any) -> Any:
        await asyncio.sleep(0)
        context = current_item()
        return [context.item, context.idempotency_key]

    outcomes = run_async_items(who, pairs(20), policy(), "inst", 20)
    assert all(outcome.value == [outcome.item, f"inst/{outcome.item}"] for outcome in outcomes)


def test_on_outcome_is_called_as_each_item_settles() -> None:
    """The caller hears of each item as it finishes (to checkpoint it at once)."""
    heard: list[ItemOutcome] = []
    outcomes = run_async_items(InFlight(), pairs(10), policy(), "inst", 4, on_outcome=heard.append)
    assert heard == outcomes


def test_runs_from_inside_a_running_loop() -> None:
    """Called from code that already runs a loop, the items run on a loop of their own."""

    async def caller() -> list[ItemOutcome]:
        return run_async_items(InFlight(), pairs(5), policy(), "inst", 5)

    assert len(asyncio.run(caller())) == 5


def test_pending_items_are_pulled_lazily() -> None:
    """Items are taken from the iterator as slots free up, never more than `max_parallel` ahead."""
    taken: list[int] = []
    done: list[int] = []
    ahead: list[int] = []

    def lazily() -> Any:
        for item in pairs(100):
            taken.append(VALUES.of(item))
            yield item

    async def note(item: Any) -> Any:
        ahead.append(len(taken) - len(done))
        await asyncio.sleep(0.001)
        done.append(item)
        return item

    run_async_items(note, lazily(), policy(), "inst", 10)
    assert max(ahead) == 10 and len(done) == 100


@pytest.mark.parametrize("max_parallel", [1, 10_000])
def test_max_parallel_bounds_accepted(max_parallel: int) -> None:
    """One item in flight and ten thousand both work."""
    assert len(run_async_items(InFlight(), pairs(30), policy(), "inst", max_parallel)) == 30


def test_async_items_go_in_one_task_run() -> None:
    """An async run submits its pending items as one batch; sync runs keep their batching."""
    settings = get_settings()
    assert submission_settings(settings, True, 500).batch_size == 500
    assert submission_settings(settings, False, 500) is settings

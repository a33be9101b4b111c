"""Running an `async def` processor: up to `max_parallel` items in flight on one event loop.

An I/O-bound processor spends its time awaiting replies; a fixed pool of workers pulling from one
iterator keeps thousands in flight with memory bounded by what is in flight. Each item takes the same
path as on threads (src/fanout/engine/item_path.py).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sized
from typing import TYPE_CHECKING, Any

from fanout.core.errors import CheckpointNotWritten
from fanout.core.item_context import processing
from fanout.core.outcome import ItemOutcome, describe
from fanout.core.settings import FlowSettings
from fanout.engine.concurrency import AsyncItemSlot
from fanout.engine.item_logging import log_failed_attempt
from fanout.engine.progress import ItemTally
from fanout.engine.retry_policy import RetryPolicy
from fanout.inputs.items import ItemValues

if TYPE_CHECKING:
    from fanout.engine.item_path import ItemRun

AsyncProcessor = Callable[[Any], Awaitable[Any]]
MAX_ASYNC_PARALLEL = 10_000
SlotLimit = tuple[str, float] | None
"""A global concurrency limit's name and how long a worker holds a slot across items, or no limit."""


async def attempt_async(
    function: AsyncProcessor, item: str, value: Any, retry: RetryPolicy, instance_id: str, stage: str | None = None
) -> ItemOutcome:
    """Await the processor on one item under the retry policy; the item's outcome, never an exception."""
    attempts = 0
    spent = 0.0

    async def attempt() -> Any:
        nonlocal attempts, spent
        attempts += 1
        started = time.perf_counter()
        with processing(instance_id, item, attempts, stage) as context:
            try:
                return await function(value)
            except Exception as error:
                log_failed_attempt(context, attempts, error, retrying=retry.will_retry(error, attempts))
                raise
            finally:
                spent += time.perf_counter() - started

    try:
        value = await retry.acall(attempt)
    except Exception as error:  # noqa: BLE001 - the item's last error is its outcome
        return ItemOutcome(item=item, error=describe(error), attempts=attempts, duration=spent)
    return ItemOutcome(item=item, value=value, attempts=attempts, duration=spent)


async def run_all(
    function: AsyncProcessor,
    items: Iterable[str],
    retry: RetryPolicy,
    instance_id: str,
    max_parallel: int,
    on_outcome: Callable[[ItemOutcome], None] | None = None,
    values: ItemValues | None = None,
    limit: SlotLimit = None,
    stage: str | None = None,
) -> list[ItemOutcome]:
    """Every item attempted with at most `max_parallel` in flight; outcomes in the order they finished.
    `on_outcome` runs on the loop as each item finishes, so it must be quick (an append, a count).
    `limit` (a global limit's name and how long a slot is held) caps items in flight across runs."""
    source: Iterator[str] = iter(items)
    size = len(items) if isinstance(items, Sized) else max_parallel
    workers = max(1, min(max_parallel, MAX_ASYNC_PARALLEL, size))
    outcomes: list[ItemOutcome] = []
    value_of = (values or ItemValues()).of

    async def worker() -> None:
        slot = AsyncItemSlot(*(limit or (None, 0.0)))
        try:
            for item in source:  # one shared iterator: the loop's single thread hands out each item once
                await slot.before_item()
                outcome = await attempt_async(function, item, value_of(item), retry, instance_id, stage)
                if on_outcome is not None:
                    on_outcome(outcome)
                outcomes.append(outcome)
        finally:
            await slot.release()

    await asyncio.gather(*(worker() for _ in range(workers)))
    return outcomes


def run_async_items(
    function: AsyncProcessor,
    items: Iterable[str],
    retry: RetryPolicy,
    instance_id: str,
    max_parallel: int,
    on_outcome: Callable[[ItemOutcome], None] | None = None,
    values: ItemValues | None = None,
    limit: SlotLimit = None,
    stage: str | None = None,
) -> list[ItemOutcome]:
    """`run_all` from synchronous code: on a new event loop in this thread, or in a thread of its own
    when this thread already runs a loop (a sync flow called from async code)."""

    def work() -> list[ItemOutcome]:
        return asyncio.run(run_all(function, items, retry, instance_id, max_parallel, on_outcome, values, limit, stage))

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return work()
    result: list[list[ItemOutcome]] = []
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            result.append(work())
        except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(error)

    thread = threading.Thread(target=in_thread, name="fanout-async-items")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def carry_async(
    function: AsyncProcessor,
    items: list[str],
    done: Mapping[str, Any],
    run: ItemRun,
    record: Callable[[str, Any], None],
    tally: ItemTally,
) -> list[ItemOutcome]:
    """A task run's items through an async processor: those in `done` from their checkpoints, the
    rest awaited, each checkpointed with `record` and counted as it finishes; outcomes in item order."""

    def record_and_count(outcome: ItemOutcome) -> None:
        if outcome.ok:
            try:
                record(outcome.item, outcome.value)
            except CheckpointNotWritten as error:
                outcome.error, outcome.value = describe(error), None
        tally.count(ok=outcome.ok)

    pending = [item for item in items if item not in done]
    fresh = {
        outcome.item: outcome
        for outcome in run_async_items(
            function,
            pending,
            run.retry,
            run.instance_id,
            run.max_parallel,
            record_and_count,
            run.values,
            (run.concurrency_limit, run.slot_hold_seconds) if run.concurrency_limit else None,
            run.stage,
        )
    }
    return [ItemOutcome(item=item, value=done[item], cached=True) if item in done else fresh[item] for item in items]


def submission_settings(settings: FlowSettings, is_async: bool, pending: int) -> FlowSettings:
    """Async items go in one task run, whose event loop keeps `max_parallel` of them in flight;
    sync items are batched as the settings say."""
    if not is_async or pending <= 1:
        return settings
    return settings.model_copy(update={"batch_size": pending})

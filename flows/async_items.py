"""Running an `async def` processor: up to `max_parallel` items in flight on one event loop.

An I/O-bound processor spends its time awaiting replies; threads would cap it
at a few hundred in flight and pay a context switch per reply. Here a fixed
pool of `max_parallel` workers (up to 10,000) pulls items from one iterator,
so memory stays bounded by what is in flight, not by the number of items,
and nothing waits on a semaphore.

Each item goes through the same steps as on threads: its attempts with the
same retry policy (transient errors only, backoff with jitter,
`flows/retry_policy.py`), `current_item()` set for each attempt, the result
checked to be JSON, its duration measured, and `on_outcome` called the moment
it settles, which is where the caller checkpoints it and counts progress.
A crash loses only the items in flight.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sized
from dataclasses import dataclass, field
from typing import Any

from flows.item_context import processing
from flows.item_logging import item_logger
from flows.outcome import ItemOutcome, describe
from flows.processor_kind import checked_result
from flows.retry_policy import is_transient, jittered

AsyncProcessor = Callable[[Any], Awaitable[Any]]
MAX_ASYNC_PARALLEL = 10_000


@dataclass(frozen=True)
class AsyncPolicy:
    """How items are attempted: the instance they belong to, retry delays and their jitter."""

    instance_id: str
    delays: list[float] = field(default_factory=list)
    jitter_factor: float = 0.0


async def attempt_async(function: AsyncProcessor, key: str, item: Any, policy: AsyncPolicy) -> ItemOutcome:
    """Await the processor on one item, retrying transient errors; the item's outcome, never an exception."""
    attempts = 0
    spent = 0.0
    while True:
        attempts += 1
        started = time.perf_counter()
        try:
            with processing(policy.instance_id, key, attempts) as context:
                value = checked_result(await function(item))
        except Exception as error:  # noqa: BLE001 - classified below, reported per item
            spent += time.perf_counter() - started
            if is_transient(error) and attempts <= len(policy.delays):
                delay = jittered(policy.delays[attempts - 1], policy.jitter_factor)
                item_logger(context).warning("attempt %d failed (%s); retrying in %.2fs", attempts, describe(error), delay)
                await asyncio.sleep(delay)
                continue
            item_logger(context).error("failed after %d attempt(s): %s", attempts, describe(error))
            return ItemOutcome(item=key, error=describe(error), attempts=attempts, duration=spent)
        spent += time.perf_counter() - started
        return ItemOutcome(item=key, value=value, attempts=attempts, duration=spent)


async def run_all(
    function: AsyncProcessor,
    pending: Iterable[tuple[str, Any]],
    policy: AsyncPolicy,
    max_parallel: int,
    on_outcome: Callable[[ItemOutcome], None] | None = None,
) -> list[ItemOutcome]:
    """Every `(key, item)` of `pending` attempted with at most `max_parallel` in flight; outcomes in
    the order they settled. `on_outcome` runs on the loop, so it must be quick (an append, a count)."""
    source: Iterator[tuple[str, Any]] = iter(pending)
    workers = max(1, min(max_parallel, MAX_ASYNC_PARALLEL, len(pending) if isinstance(pending, Sized) else max_parallel))
    outcomes: list[ItemOutcome] = []

    async def worker() -> None:
        for key, item in source:  # one shared iterator: the loop's single thread hands out each item once
            outcome = await attempt_async(function, key, item, policy)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return outcomes


def run_async_items(
    function: AsyncProcessor,
    pending: Iterable[tuple[str, Any]],
    policy: AsyncPolicy,
    max_parallel: int,
    on_outcome: Callable[[ItemOutcome], None] | None = None,
) -> list[ItemOutcome]:
    """`run_all` from synchronous code: on a new event loop in this thread, or in a thread of its own
    when this thread already runs a loop (a sync flow called from async code)."""

    def work() -> list[ItemOutcome]:
        return asyncio.run(run_all(function, pending, policy, max_parallel, on_outcome))

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

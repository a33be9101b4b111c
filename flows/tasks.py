"""The Prefect tasks that run items: one task run per item, or one per batch of items."""

from __future__ import annotations

import time
from typing import Any

from prefect import Task, task
from prefect.utilities.annotations import NotSet
from prefect.runtime import task_run

from flows.checkpoints import CheckpointStore, journal_name, result_storage, storage_folder, task_cache_key
from flows.concurrency import ItemSlot
from flows.failures import ATTEMPTS
from flows.item_context import processing
from flows.item_logging import item_logger
from flows.item_timing import timed_attempt
from flows.outcome import ItemOutcome, describe
from flows.processor import load_processor
from flows.progress import ItemTally
from flows.retry_policy import is_transient, jittered, retry_delays, retry_transient_only
from flows.settings import FanoutSettings


def run_item(
    item: str, processor: str, instance_id: str, concurrency_limit: str | None = None
) -> Any:
    """Run the processor on one item; Prefect persists the value as the item's checkpoint.

    With a `concurrency_limit`, the item holds one slot of that global limit while it runs.
    """
    attempt = task_run.get_run_count()
    ATTEMPTS.note(instance_id, item, attempt)
    with ItemSlot(concurrency_limit, hold_seconds=0) as slot:
        slot.before_item()
        with processing(instance_id, item, attempt=attempt), timed_attempt(instance_id, item, attempt):
            return load_processor(processor)(item)


# The tasks wrap functions importable under their own names, so Dask workers receive them by
# reference (pickling a module-level function that a Task shadows would copy its globals).
process_item = task(name="process_item", task_run_name="process_item-{item}", persist_result=True)(run_item)


def configured_process_item(settings: FanoutSettings) -> Any:
    """`process_item` with this run's checkpoint key, result storage and retry policy."""
    return process_item.with_options(
        cache_key_fn=task_cache_key,
        result_storage=storage_folder(settings) or NotSet,
        retries=settings.retries,
        retry_delay_seconds=retry_delays(settings) or 0,
        retry_jitter_factor=settings.retry_jitter_factor or NotSet,
        retry_condition_fn=retry_transient_only,
    )


def run_batch(
    items: list[str], processor: str, instance_id: str, label: str, settings: FanoutSettings
) -> list[ItemOutcome]:
    """Run the processor over a batch, checkpointing every item as soon as it finishes.

    Each finished item is appended to the batch's journal at once. Items a
    previous attempt of this batch already journaled (a rerun, say on another
    Dask worker) are skipped; a failing item does not stop the rest of the batch.
    The batch's own result is not persisted: its items' records are the
    checkpoints, and writing the whole batch again would only cost time.
    """
    checkpoints = CheckpointStore(result_storage(settings), instance_id, processor)
    journal = journal_name(label)
    done = checkpoints.load(items, journals=[journal])
    function = load_processor(processor)
    delays = retry_delays(settings)
    outcomes: list[ItemOutcome] = []
    with ItemSlot.from_settings(settings) as slot, checkpoints.journal(journal) as records, ItemTally(instance_id) as tally:
        for item in items:
            if item in done:
                outcomes.append(ItemOutcome(item=item, value=done[item], cached=True))
                continue
            slot.before_item()
            outcome = attempt_item(function, item, settings, instance_id, delays)
            if outcome.ok:
                records.append(item, outcome.value)
            outcomes.append(outcome)
            tally.count(outcome.ok)
    return outcomes


# Typed `Any` as Prefect's task runners expect of a task that may return a coroutine.
process_batch: Task[..., Any] = task(name="process_batch", task_run_name="process_batch-{label}", persist_result=False)(
    run_batch
)


def attempt_item(
    function: Any, item: str, settings: FanoutSettings, instance_id: str, delays: list[float] | None = None
) -> ItemOutcome:
    """Call the processor, retrying transient errors with backoff and jitter (`delays`: the
    settings' retry delays, computed once per batch by the caller)."""
    delays = retry_delays(settings) if delays is None else delays
    attempts = 0
    spent = 0.0
    while True:
        attempts += 1
        started = time.perf_counter()
        try:
            with processing(instance_id, item, attempts) as context:
                value = function(item)
        except Exception as error:  # noqa: BLE001 - classified below, reported per item
            spent += time.perf_counter() - started
            if is_transient(error) and attempts <= len(delays):
                delay = jittered(delays[attempts - 1], settings.retry_jitter_factor)
                item_logger(context).warning("attempt %d failed (%s); retrying in %.2fs", attempts, describe(error), delay)
                time.sleep(delay)
                continue
            item_logger(context).error("failed after %d attempt(s): %s", attempts, describe(error))
            return ItemOutcome(item=item, error=describe(error), attempts=attempts, duration=spent)
        spent += time.perf_counter() - started
        return ItemOutcome(item=item, value=value, attempts=attempts, duration=spent)

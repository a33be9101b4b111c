"""The one path an item takes: attempts under the retry policy, checkpoint, timing, correlation, progress.

How items are grouped into task runs is decided where they are submitted; what happens to an item is
decided here, once. A task run ends Failed only after its other items finished and were checkpointed.
"""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass, field
from typing import Any

from prefect.filesystems import WritableFileSystem

from fanout.core.errors import CheckpointNotWritten, ItemsFailed
from fanout.core.outcome import ItemOutcome, describe
from fanout.core.settings import FlowSettings
from fanout.engine.async_items import carry_async
from fanout.engine.attempts import attempt_item
from fanout.engine.concurrency import ItemSlot
from fanout.engine.item_processes import current_processes
from fanout.engine.processor import Processor, load_processor
from fanout.engine.processor_kind import processor_kind
from fanout.engine.progress import ItemTally
from fanout.engine.retry_policy import RetryPolicy
from fanout.inputs.items import ItemValues
from fanout.storage.checkpoints import CheckpointJournal, CheckpointStore, journal_name, result_storage


@dataclass(frozen=True)
class ItemRun:
    """What an item needs from its flow run; sent with every task run, so it pickles (Dask workers)."""

    instance_id: str
    processor: str
    """The stage: names the folder of its checkpoints (for the seed, its `module:function` spec)."""
    storage: WritableFileSystem
    retry: RetryPolicy
    concurrency_limit: str | None = None
    slot_hold_seconds: float = 1.0
    max_parallel: int = 8
    values: ItemValues = field(default_factory=ItemValues)
    """What the processor receives for each item key (src/fanout/inputs/items.py): the key itself for plain strings."""
    function: Processor | None = None
    """The function called per item; None: the one `processor` names (`module:function`)."""
    stage_in_ids: bool = False
    """Whether correlation and idempotency ids name the stage (`<instance>/<stage>/<item>`)."""

    @property
    def process(self) -> Processor:
        """The function called per item."""
        return self.function if self.function is not None else load_processor(self.processor)

    @property
    def stage(self) -> str | None:
        """The stage as ids name it, or None when they leave it out."""
        return self.processor if self.stage_in_ids else None

    @property
    def scope(self) -> str:
        """What precedes the item in its correlation id: `<instance>` or `<instance>/<stage>`."""
        return f"{self.instance_id}/{self.processor}" if self.stage_in_ids else self.instance_id

    @classmethod
    def for_run(cls, instance_id: str, settings: FlowSettings) -> ItemRun:
        return cls(
            instance_id=instance_id,
            processor=settings.processor,
            storage=result_storage(settings),
            retry=RetryPolicy.from_settings(settings),
            concurrency_limit=settings.concurrency_limit,
            slot_hold_seconds=settings.slot_hold_seconds,
            max_parallel=settings.max_parallel,
        )

    def checkpoints(self) -> CheckpointStore:
        return CheckpointStore(self.storage, self.instance_id, self.processor)


ITEM_THREADS: set[int] = set()
"""Native ids of the threads that ran sync items on this process's threads: the CPU-bound check watches them alone."""


def run_items(items: list[str], run: ItemRun, label: str) -> list[ItemOutcome]:
    """The body of every task run: each item through `carry_item`, in order.

    Items an earlier attempt of this task run checkpointed (in its journal) come
    back from there, so a task run that Prefect or Dask runs again redoes nothing.
    The task run's own result is not persisted: its items' records are the checkpoints.
    """
    checkpoints = run.checkpoints()
    done = checkpoints.load(items, journal=journal_name(label))
    process = run.process
    outcomes: list[ItemOutcome] = []
    with (
        ItemSlot(run.concurrency_limit, run.slot_hold_seconds) as slot,
        checkpoints.journal(label) as journal,
        ItemTally() as tally,
    ):
        processes = current_processes()
        if processes is not None:  # the same steps per item, in a worker process (src/fanout/engine/item_processes.py)
            outcomes = processes.carry(items, done, run, functools.partial(checkpoint, journal), tally, slot)
        elif (
            processor_kind(process) == "async"
        ):  # the same steps per item, on an event loop (src/fanout/engine/async_items.py)
            record = functools.partial(checkpoint, journal)
            outcomes = carry_async(process, items, done, run, record, tally)
        else:
            ITEM_THREADS.add(threading.get_native_id())
            outcomes = carry_items(process, items, done, run, journal, tally, slot)
    return task_result(outcomes)


def carry_items(
    process: Processor,
    items: list[str],
    done: dict[str, Any],
    run: ItemRun,
    journal: CheckpointJournal,
    tally: ItemTally,
    slot: ItemSlot,
) -> list[ItemOutcome]:
    """A task run's items on its thread, in order: those in `done` from their checkpoints, each other one
    through `carry_item` under the thread's slot of the global limit."""
    outcomes: list[ItemOutcome] = []
    keep = outcomes.append
    for item in items:
        if item in done:
            keep(ItemOutcome(item, done[item], None, 0, True))
            continue
        slot.before_item()
        keep(carry_item(process, item, run, journal, tally))
    return outcomes


class TaskItemsFailed(ItemsFailed):
    """A task run's items, some of which failed for good: it ends the task run Failed, and carries
    every item's outcome back to the flow (pickled whole, from a Dask worker too)."""

    def __init__(self, outcomes: list[ItemOutcome]) -> None:
        self.outcomes = outcomes
        super().__init__([(outcome.item, outcome.error or "") for outcome in outcomes if not outcome.ok], len(outcomes))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.outcomes,))


def task_result(outcomes: list[ItemOutcome]) -> list[ItemOutcome]:
    """The task run's outcomes, or `TaskItemsFailed` when any item failed for good."""
    if all(outcome.error is None for outcome in outcomes):  # `ok`, without a property call per item
        return outcomes
    raise TaskItemsFailed(outcomes)


def carry_item(
    process: Processor, item: str, run: ItemRun, journal: CheckpointJournal, tally: ItemTally
) -> ItemOutcome:
    """Run `process` on `item` under the retry policy, checkpoint its result, and count it.

    Every attempt sees `current_item()` (instance, item, attempt: the correlation
    id of its log lines); the outcome carries the attempts made and the time spent
    in them (src/fanout/engine/attempts.py). A result that cannot be checkpointed
    fails the item with the reason. The item counts as finished only once its
    record is written, and before the next item starts.
    """
    outcome = attempt_item(process, item, run.values.of(item), run.retry, run.instance_id, 0, run.stage)
    if outcome.error is None:
        try:
            checkpoint(journal, item, outcome.value)
        except CheckpointNotWritten as error:
            outcome.error, outcome.value = describe(error), None
    tally.count(ok=outcome.error is None)
    return outcome


def checkpoint(journal: CheckpointJournal, item: str, value: Any) -> None:
    """Store `item`'s record now, or raise `CheckpointNotWritten` saying why."""
    try:
        journal.append(item, value)
    except (TypeError, ValueError) as error:
        raise CheckpointNotWritten(f"result is not JSON: {describe(error)}") from error
    except Exception as error:  # each storage block raises its own kind
        raise CheckpointNotWritten(f"storage refused the checkpoint: {describe(error)}") from error

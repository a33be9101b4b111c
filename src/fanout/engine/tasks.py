"""The Prefect tasks that carry items: one task run per item, or one per batch; the same path inside.

They differ only in their names, so a person finds an item by its key in the UI. Neither persists a
Prefect result nor uses Prefect's cache or retries: fanout's own checkpoint is the record, and
Prefect's cache would unpickle what it reads. See docs/design/checkpoint-format.md.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import prefect.task_engine  # noqa: F401 - what runs these tasks, imported with them rather than by a run's first submission
from prefect import Task, task

from fanout.core.outcome import ItemOutcome
from fanout.engine.item_path import ItemRun, run_items


class BatchOutcomes:
    """A batch task run's item outcomes, returned as one object.

    Prefect links each element of a list a task returns to the task run's state, and
    keeps the link for the rest of the flow run: a visit and an entry per item. An
    object that is not a collection is one visit and one entry.
    """

    __slots__ = ("outcomes",)

    def __init__(self, outcomes: list[ItemOutcome]) -> None:
        self.outcomes = outcomes


def run_one(item: str, run: ItemRun) -> ItemOutcome:
    """One item in a task run of its own."""
    return run_items([item], run, label=item)[0]


def run_batch(items: list[str], run: ItemRun, label: str) -> BatchOutcomes:
    """A batch of items in one task run (`label` names it: `<first item>..<last item>`)."""
    return BatchOutcomes(run_items(items, run, label))


# The tasks wrap functions importable under their own names, so Dask workers receive them by
# reference (pickling a module-level function that a Task shadows would copy its globals).
# Typed `Any` as Prefect's task runners expect of a task that may return a coroutine.
process_item: Task[..., Any] = task(name="process_item", task_run_name="process_item-{item}", persist_result=False)(
    run_one
)
process_batch: Task[..., Any] = task(name="process_item", task_run_name="process_item-{label}", persist_result=False)(
    run_batch
)


@dataclass(frozen=True)
class ItemTasks:
    """A stage's two tasks: one item per task run, and a batch per task run."""

    one: Task[..., Any]
    batch: Task[..., Any]


@functools.lru_cache(maxsize=256)
def item_tasks(name: str) -> ItemTasks:
    """The tasks of a stage whose function is called `name`: task runs `<name>-<item>` and
    `<name>-<first item>..<last item>`."""
    return ItemTasks(
        one=process_item.with_options(name=name, task_run_name=f"{name}-{{item}}"),
        batch=process_batch.with_options(name=name, task_run_name=f"{name}-{{label}}"),
    )

"""A task run's items as Prefect sees them: Failed when an item failed for good, with every item's outcome."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem

from fanout.core.outcome import ItemOutcome
from fanout.engine.item_path import ItemRun, TaskItemsFailed, run_items
from fanout.engine.retry_policy import RetryPolicy


def broken_b(item: str) -> str:
    if item == "b":
        raise ValueError("b is broken")
    return item.upper()


def item_run(tmp_path: Path) -> ItemRun:
    return ItemRun("inst", "stage", LocalFileSystem(basepath=str(tmp_path)), RetryPolicy(0, 0, 0), function=broken_b)


def test_a_task_run_with_a_failed_item_raises_after_its_siblings_finish(tmp_path: Path) -> None:
    """Items a and c finish and are checkpointed; the task run raises naming b and its error."""
    run = item_run(tmp_path)
    with pytest.raises(TaskItemsFailed, match="1 of 3 items failed: b: ValueError: b is broken") as raised:
        run_items(["a", "b", "c"], run, label="a..c")
    assert [(outcome.item, outcome.ok) for outcome in raised.value.outcomes] == [("a", True), ("b", False), ("c", True)]
    assert run.checkpoints().load(["a", "b", "c"]) == {"a": "A", "c": "C"}


def test_a_task_run_whose_items_all_succeed_returns_their_outcomes(tmp_path: Path) -> None:
    """No failure: the outcomes come back, and the task run completes."""
    assert [outcome.value for outcome in run_items(["a", "c"], item_run(tmp_path), label="a..c")] == ["A", "C"]


def test_the_failure_carries_every_outcome_across_processes() -> None:
    """Pickled (a Dask worker's result), it keeps each item's outcome, attempts included."""
    outcomes = [ItemOutcome(item="a", value=1, attempts=1), ItemOutcome(item="b", error="ValueError: x", attempts=3)]
    copy = pickle.loads(pickle.dumps(TaskItemsFailed(outcomes)))
    assert copy.outcomes == outcomes and copy.failures == [("b", "ValueError: x")] and str(copy).startswith("1 of 2")

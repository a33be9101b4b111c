"""A run on threads whose items compute: the rest goes to worker processes, with checkpoints, retries and
resume as on threads; a processor that cannot run in a worker, or the setting turned off, keeps it on threads.

Whether items compute is measured from the flow process's CPU time, which other work on a shared machine
shakes; these tests take every run as computing (`CPU_BOUND_SHARE` 0), so they show what follows from it.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from fanout import ItemsFailed, durable_map
from fanout.engine import cpu_bound
from fanout.inputs.request import FanoutRequest
from fanout.seed import fan_out_fan_in
from tests.support.processors import executed

ITEM_SECONDS = 0.02
COUNT = 120
"""Enough 20 ms items that the rest after the first batch holds over a second of item time."""


@pytest.fixture(autouse=True)
def computing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run counts as CPU-bound, on threads, with batches from the first item on and two worker processes."""
    monkeypatch.setattr(cpu_bound, "CPU_BOUND_SHARE", 0.0)
    monkeypatch.setenv("FANOUT_TASK_RUNNER", "thread")
    monkeypatch.setenv("FANOUT_PER_ITEM_TASK_LIMIT", "0")
    monkeypatch.setenv("FANOUT_PROCESSES", "2")


def ran_in(item: int) -> list[int]:
    """The item and the process that ran it, after 20 ms."""
    time.sleep(ITEM_SECONDS)
    return [item, os.getpid()]


@flow
def pids(count: int, processor: Any) -> list[list[int]]:
    """Each item with the process that ran it."""
    return list(durable_map(processor, range(count), instance_id=f"pids-{uuid.uuid4().hex[:8]}"))


def processes_of(results: list[list[int]]) -> Counter[str]:
    return Counter("flow" if pid == os.getpid() else "worker" for _, pid in results)


def test_the_rest_of_a_computing_run_runs_in_worker_processes(caplog: pytest.LogCaptureFixture) -> None:
    """After the first batches on threads, the remaining items run in worker processes; results in item order."""
    with caplog.at_level(logging.INFO):
        results = pids(COUNT, ran_in)
    assert [item for item, _ in results] == list(range(COUNT))
    assert processes_of(results)["worker"] >= COUNT // 2
    assert "run in 2 worker processes" in caplog.text


def test_a_processor_that_cannot_be_pickled_stays_on_threads(caplog: pytest.LogCaptureFixture) -> None:
    """A closure cannot reach a worker process: every item runs in the flow process, and the log says why."""
    offset = 0

    def closure(item: int) -> list[int]:
        time.sleep(ITEM_SECONDS)
        return [item + offset, os.getpid()]

    with caplog.at_level(logging.INFO):
        results = pids(COUNT, closure)
    assert [item for item, _ in results] == list(range(COUNT))
    assert processes_of(results) == Counter(flow=COUNT)
    assert "stay on threads (processor" in caplog.text and "cannot be pickled" in caplog.text


def test_the_setting_off_keeps_every_item_on_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """`FANOUT_CPU_BOUND_PROCESSES=false`: every item runs in the flow process."""
    monkeypatch.setenv("FANOUT_CPU_BOUND_PROCESSES", "false")
    assert processes_of(pids(COUNT, ran_in)) == Counter(flow=COUNT)


def test_items_in_the_moved_rest_are_retried_checkpointed_and_resumed(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A flaky item in the rest is retried in its worker; a failed one fails the run, and the rerun executes only it."""
    monkeypatch.setenv("FANOUT_TEST_SLEEP", str(ITEM_SECONDS))
    monkeypatch.setenv("FANOUT_TEST_FLAKY", "item-100")
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-110")
    request = FanoutRequest(count=COUNT, instance_id=f"moved-{uuid.uuid4().hex[:8]}")
    with caplog.at_level(logging.INFO), pytest.raises(ItemsFailed, match="item-110"):
        fan_out_fan_in(request)
    assert "run in 2 worker processes" in caplog.text
    assert Counter(executed(execution_log))["item-100"] == 2
    for path in execution_log.iterdir():
        path.unlink()

    monkeypatch.delenv("FANOUT_TEST_FAIL")
    assert fan_out_fan_in(request) == [f"Processed item-{i}" for i in range(1, COUNT + 1)]
    assert executed(execution_log) == ["item-110"]

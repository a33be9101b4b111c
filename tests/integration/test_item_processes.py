"""Items in worker processes (`FANOUT_TASK_RUNNER=process`): outcomes, checkpoints, crashes, refusals, logs."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from fanout.core.errors import ProcessorNotFound
from fanout.core.outcome import ItemOutcome
from fanout.core.settings import FanoutSettings
from fanout.engine.concurrency import ItemSlot
from fanout.engine.item_logging import TASK_RUN_LOGGER
from fanout.engine.item_path import ItemRun
from fanout.engine.item_processes import ItemProcesses, worker_processes
from fanout.engine.progress import ItemTally
from fanout.engine.runners import check_runner, slots, task_runner

SCRIPTED = "tests.support.processors:scripted"


def item_run(processor: str, retries: int = 2) -> ItemRun:
    settings = FanoutSettings(_env_file=None, processor=processor, retries=retries, retry_delay_seconds=0)  # type: ignore[call-arg]
    return ItemRun.for_run("proc-test", settings)


def carry(
    processes: ItemProcesses, items: list[str], run: ItemRun, done: dict[str, Any] | None = None
) -> tuple[list[ItemOutcome], dict[str, Any]]:
    """The items through one worker; the outcomes, and what was checkpointed."""
    recorded: dict[str, Any] = {}
    with ItemTally() as tally, ItemSlot(None, 1.0) as slot:
        outcomes = processes.carry(items, done or {}, run, recorded.__setitem__, tally, slot)
    return outcomes, recorded


def worker_pid(item: str) -> int:
    """The process that ran the item."""
    return os.getpid()


def test_items_run_in_worker_processes_and_are_checkpointed_in_order() -> None:
    """Each item's result comes back from a worker process and is checkpointed in the flow, in item order."""
    run = item_run(f"{__name__}:worker_pid")
    with ItemProcesses(run.processor, 2) as processes:
        outcomes, recorded = carry(processes, ["a", "b", "c"], run)
    assert [outcome.item for outcome in outcomes] == ["a", "b", "c"]
    assert all(outcome.ok and outcome.attempts == 1 for outcome in outcomes)
    assert os.getpid() not in {outcome.value for outcome in outcomes}
    assert recorded == {outcome.item: outcome.value for outcome in outcomes}


def test_an_item_in_a_worker_sees_its_stage_in_its_idempotency_key() -> None:
    """A stage whose ids name it gives items in worker processes `<instance>/<stage>/<item>`, as on threads."""
    run = dataclasses.replace(item_run("tests.support.processors:keyed"), processor="enrich", stage_in_ids=True)
    with ItemProcesses("tests.support.processors:keyed", 1) as processes:
        outcomes, _ = carry(processes, ["item-1"], run)
    assert [outcome.value for outcome in outcomes] == ["proc-test/enrich/item-1"]


def test_checkpointed_items_are_not_sent_to_a_worker(execution_log: Path) -> None:
    """Items an earlier attempt recorded come back from their checkpoints without running again."""
    run = item_run(SCRIPTED)
    with ItemProcesses(run.processor, 1) as processes:
        outcomes, recorded = carry(processes, ["item-1", "item-2"], run, done={"item-1": "Processed item-1"})
    assert [outcome.status for outcome in outcomes] == ["cached", "completed"]
    assert list(recorded) == ["item-2"]
    assert sorted(path.name.split(".")[0] for path in execution_log.iterdir()) == ["item-2"]


def test_a_worker_that_dies_mid_item_is_replaced_and_the_item_runs_again(
    execution_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The item whose worker died is retried in a new worker; the rest of the batch runs once each."""
    monkeypatch.setenv("FANOUT_TEST_CRASH_AT", "item-2")
    run = item_run(SCRIPTED)
    with ItemProcesses(run.processor, 1) as processes:
        outcomes, recorded = carry(processes, ["item-1", "item-2", "item-3"], run)
    assert [outcome.value for outcome in outcomes] == ["Processed item-1", "Processed item-2", "Processed item-3"]
    assert outcomes[1].attempts == 2
    runs = sorted(path.name.split(".")[0] for path in execution_log.iterdir() if path.name != "crashed")
    assert runs == ["item-1", "item-2", "item-2", "item-3"]
    assert list(recorded) == ["item-1", "item-2", "item-3"]


def test_an_item_that_kills_every_worker_fails_after_its_retries_and_its_siblings_finish(
    execution_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poison item fails with `ItemProcessDied` once its retries are spent; the other items complete."""
    monkeypatch.setenv("FANOUT_TEST_CRASH_ALWAYS", "item-2")
    run = item_run(SCRIPTED, retries=1)
    with ItemProcesses(run.processor, 1) as processes:
        outcomes, _ = carry(processes, ["item-1", "item-2", "item-3"], run)
    assert [outcome.ok for outcome in outcomes] == [True, False, True]
    assert outcomes[1].attempts == 2
    assert outcomes[1].error == "ItemProcessDied: its worker process died (exit code 17) while running it"


def test_a_processor_that_cannot_be_pickled_is_refused_before_any_worker_starts() -> None:
    """A lambda cannot reach a worker process: refused with the reason."""
    with pytest.raises(ProcessorNotFound, match="cannot be pickled for worker processes"):
        ItemProcesses(lambda item: item, 1)


def test_item_log_lines_reach_the_task_run_logger_with_their_correlation_id(
    execution_log: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`item_logger()` lines written in a worker are written in the flow by the task-run logger, correlated."""
    caplog.set_level(logging.INFO, logger=TASK_RUN_LOGGER)
    run = item_run("tests.support.processors:chatty")
    with ItemProcesses(run.processor, 1) as processes:
        carry(processes, ["item-7"], run)
    [line] = [record for record in caplog.records if "working on it" in record.getMessage()]
    assert getattr(line, "correlation_id", None) == "proc-test/item-7"
    assert line.getMessage() == "[proc-test/item-7] working on it"


def test_the_process_runner_has_one_task_run_per_worker() -> None:
    """`process` runs as many task runs at once as worker processes, one per core by default."""
    settings = FanoutSettings(_env_file=None, task_runner="process")  # type: ignore[call-arg]
    assert slots(settings) == worker_processes()
    assert task_runner(settings.model_copy(update={"processes": 3}))._max_workers == 3  # type: ignore[attr-defined]


def test_an_async_processor_is_refused_on_the_process_runner() -> None:
    """Async processors belong on an event loop: `process` refuses them before the run starts."""
    settings = FanoutSettings(  # type: ignore[call-arg]
        _env_file=None, task_runner="process", processor="tests.support.workload_processors:echo_async"
    )
    with pytest.raises(ProcessorNotFound, match="async processor"):
        check_runner(settings)

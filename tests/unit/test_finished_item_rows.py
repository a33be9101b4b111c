"""The item rows a history read gets for a run that has just finished, before and after its report lands."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from fanout.service.instance_management import finished_item_rows
from fanout.service.runs import RunRecord
from fanout.service.status import RuntimeStatus
from tests.support.fake_instances import FakeManagedRuns

ROWS = [{"item": "item-1", "status": "succeeded", "attempts": 1}]


class LateReport(FakeManagedRuns):
    """Runs whose item report lands on the `lands_on`-th read, counting the reads."""

    def __init__(self, lands_on: int) -> None:
        super().__init__()
        self.lands_on = lands_on
        self.reads = 0

    async def item_rows(self, run: RunRecord) -> list[dict[str, Any]] | None:
        self.reads += 1
        return ROWS if self.reads >= self.lands_on else None


def finished(runs: FakeManagedRuns, seconds_ago: float, state: str = "COMPLETED") -> RunRecord:
    """A run that reached `state` `seconds_ago` seconds ago."""
    run = runs.add_run("late")
    return RunRecord(
        **{**run.__dict__, "state_type": state, "updated": datetime.now(UTC) - timedelta(seconds=seconds_ago)}
    )


def test_a_run_that_has_just_completed_answers_its_report_once_it_lands() -> None:
    """Read just after Completed, the history waits for the report published right after that state."""
    runs = LateReport(lands_on=3)
    run = finished(runs, seconds_ago=0.1)
    rows = asyncio.run(finished_item_rows(runs, run, RuntimeStatus.COMPLETED, interval=0.01))
    assert rows == ROWS
    assert runs.reads == 3


def test_a_run_finished_past_the_grace_is_answered_at_once() -> None:
    """A run whose final state is older than the grace has no report coming: one read, no wait."""
    runs = LateReport(lands_on=3)
    run = finished(runs, seconds_ago=60)
    assert asyncio.run(finished_item_rows(runs, run, RuntimeStatus.COMPLETED, interval=0.01)) is None
    assert runs.reads == 1


def test_a_running_run_is_answered_at_once() -> None:
    """A run still running publishes no report yet: one read, no wait."""
    runs = LateReport(lands_on=3)
    run = finished(runs, seconds_ago=0.1, state="RUNNING")
    assert asyncio.run(finished_item_rows(runs, run, RuntimeStatus.RUNNING, interval=0.01)) is None
    assert runs.reads == 1


def test_a_report_that_never_lands_ends_the_wait_at_the_grace() -> None:
    """A run that died between its final state and its report is answered without rows after the grace."""
    runs = LateReport(lands_on=10_000)
    run = finished(runs, seconds_ago=0.0)
    rows = asyncio.run(finished_item_rows(runs, run, RuntimeStatus.FAILED, grace=0.2, interval=0.01))
    assert rows is None
    assert 2 <= runs.reads <= 25

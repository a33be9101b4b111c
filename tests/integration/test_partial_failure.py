"""Failure thresholds under Prefect: tolerated failures Complete with nulls, the rest Fail; both publish a report."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client

from fanout.core.errors import ItemsFailed
from fanout.engine.failures import ItemReport, read_item_report
from fanout.inputs.request import FanoutRequest
from fanout.seed import fan_out_fan_in
from tests.support.processors import executed


def report_of(state: Any) -> list[ItemReport]:
    """The item report the flow run behind `state` published."""

    async def read() -> list[ItemReport]:
        async with get_client() as client:
            return await read_item_report(client, state.state_details.flow_run_id) or []

    return asyncio.run(read())


@pytest.mark.parametrize("count", [10, 150], ids=["per-item", "batched"])
def test_failures_within_the_count_complete_with_nulls(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path, count: int
) -> None:
    """Two broken items with tolerated_failure_count=2: Completed, nulls in their slots, both reported."""
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-3,item-7")
    state = fan_out_fan_in(FanoutRequest(count=count, tolerated_failure_count=2), return_state=True)
    assert state.is_completed()
    output = state.result()
    assert output[2] is None and output[6] is None
    assert sum(value is None for value in output) == 2 and output[0] == "Processed item-1"
    assert [(r.item, r.status, r.attempts) for r in report_of(state)] == [
        ("item-3", "failed", 1),
        ("item-7", "failed", 1),
    ]
    assert report_of(state)[0].error == "ValueError: item-3 is broken"


def test_failures_beyond_the_threshold_fail_with_the_report(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path
) -> None:
    """Three broken items with a 20% threshold of 10 items: Failed, naming exactly those three."""
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-1,item-5,item-9")
    state = fan_out_fan_in(FanoutRequest(count=10, tolerated_failure_percentage=20), return_state=True)
    assert state.is_failed()
    with pytest.raises(ItemsFailed) as failed:
        state.result()
    assert [item for item, _ in failed.value.failures] == ["item-1", "item-5", "item-9"]
    assert [r.item for r in report_of(state) if r.status == "failed"] == ["item-1", "item-5", "item-9"]


@pytest.mark.parametrize("count", [10, 150], ids=["per-item", "batched"])
def test_retried_items_show_their_attempts(monkeypatch: pytest.MonkeyPatch, execution_log: Path, count: int) -> None:
    """Items whose first attempt failed transiently are reported as recovered after 2 attempts."""
    monkeypatch.setenv("FANOUT_TEST_FLAKY", "item-2,item-4")
    state = fan_out_fan_in(FanoutRequest(count=count), return_state=True)
    assert state.is_completed()
    assert [(r.item, r.status, r.attempts) for r in report_of(state)] == [
        ("item-2", "recovered", 2),
        ("item-4", "recovered", 2),
    ]


def test_clean_run_publishes_no_report(execution_log: Path) -> None:
    """A run where every item succeeded first time has nothing to report."""
    state = fan_out_fan_in(FanoutRequest(count=3), return_state=True)
    assert state.is_completed() and report_of(state) == []


def test_restart_after_tolerated_failures_runs_only_the_failed_items(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path
) -> None:
    """Failed items leave no checkpoint: rerunning the instance after a fix executes exactly them."""
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-2,item-6")
    request = FanoutRequest(count=8, instance_id="redrive", tolerated_failure_count=2)
    assert fan_out_fan_in(request)[1] is None
    monkeypatch.delenv("FANOUT_TEST_FAIL")
    for path in execution_log.iterdir():
        path.unlink()
    assert fan_out_fan_in(request) == [f"Processed item-{i}" for i in range(1, 9)]
    assert executed(execution_log) == ["item-2", "item-6"]


def test_cli_tolerates_failures_when_asked(monkeypatch: pytest.MonkeyPatch, cli_here, execution_log: Path) -> None:
    """`fanout run --tolerated-failure-count 1` exits 0 with null in the failed item's slot."""
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-2")
    done = cli_here("run", "--count", "3", "--tolerated-failure-count", "1")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["Processed item-1", None, "Processed item-3"]


def test_cli_refuses_a_negative_threshold(cli_here) -> None:
    """A negative threshold is bad input: exit 2, nothing runs."""
    done = cli_here("run", "--tolerated-failure-percentage", "-5")
    assert done.returncode == 2 and "tolerated_failure_percentage" in done.stderr

"""Item failures on a real stack: transient ones are retried, permanent ones fail or are tolerated, then redriven."""

from __future__ import annotations

import asyncio

import pytest
from prefect.client.orchestration import PrefectClient

from deployments.runs import PrefectRuns, record
from tests.faults.scenarios import Workspace, start_worker
from tests.support.fault_stack import FaultStack
from tests.support.processors import is_flaky

pytestmark = pytest.mark.faults

BROKEN = ["item-4", "item-9", "item-17"]
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def restart_like_the_webhook(stack: FaultStack, run_id: object) -> None:
    """The status API's restart: the same flow run back to AwaitingRetry (Prefect's Retry)."""
    async def restart() -> None:
        async with PrefectClient(stack.server.api_url) as client:
            runs = PrefectRuns(client, "fan-out-fan-in/faults", None)
            await runs.restart(record(await client.read_flow_run(run_id)))
    asyncio.run(restart())


def test_transient_first_attempt_failures_complete_with_attempts_per_item(stack: FaultStack, workspace: Workspace) -> None:
    """20% of items fail their first attempt: the run Completes, each shows 2 attempts in the report."""
    items = [f"item-{i}" for i in range(1, 41)]
    flaky = [item for item in items if is_flaky(item, percent=20)]
    start_worker(stack, workspace, FANOUT_TEST_FLAKY_PERCENT="20")
    run_id = stack.start_run({"count": 40})
    run = stack.wait_for(run_id, FINISHED, timeout=240)
    assert run.state.type.value == "COMPLETED", stack.history(run_id)
    assert stack.result(run_id) == [f"Processed {item}" for item in items]
    report = stack.item_report(run_id)
    assert [(r.item, r.status, r.attempts) for r in report] == [(item, "recovered", 2) for item in flaky]
    assert len(flaky) == 8


def test_permanent_failures_fail_the_run_naming_exactly_them(stack: FaultStack, workspace: Workspace) -> None:
    """Three broken items, threshold 0: the run Fails and its message and report name exactly those three."""
    start_worker(stack, workspace, FANOUT_TEST_FAIL=",".join(BROKEN))
    run_id = stack.start_run({"count": 20})
    run = stack.wait_for(run_id, FINISHED, timeout=240)
    assert run.state.type.value == "FAILED", stack.history(run_id)
    assert "3 of 20 items failed: item-4: ValueError: item-4 is broken; item-9" in (run.state.message or "")
    assert [r.item for r in stack.item_report(run_id) if r.status == "failed"] == BROKEN


def test_tolerated_failures_complete_with_nulls_then_restart_runs_exactly_them(stack: FaultStack, workspace: Workspace) -> None:
    """Threshold 3: Completed with three nulls; after fixing the processor a restart executes exactly those three."""
    worker = start_worker(stack, workspace, FANOUT_TEST_FAIL=",".join(BROKEN))
    run_id = stack.start_run({"count": 20, "tolerated_failure_count": 3})
    run = stack.wait_for(run_id, FINISHED, timeout=240)
    assert run.state.type.value == "COMPLETED", stack.history(run_id)
    output = stack.result(run_id)
    assert [f"item-{i + 1}" for i, value in enumerate(output) if value is None] == BROKEN

    worker.stop(grace=5)
    workspace.clear_executions()
    start_worker(stack, workspace)
    restart_like_the_webhook(stack, run_id)
    run = stack.wait_for(run_id, FINISHED, timeout=240)
    assert run.state.type.value == "COMPLETED" and run.run_count == 2, stack.history(run_id)
    assert stack.result(run_id) == [f"Processed item-{i}" for i in range(1, 21)]
    assert sorted(workspace.executed()) == sorted(BROKEN) and set(workspace.executed().values()) == {1}


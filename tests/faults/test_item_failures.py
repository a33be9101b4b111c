"""Item failures on a real stack: transient ones are retried, permanent ones fail or are tolerated, then redriven."""

from __future__ import annotations

import httpx
import pytest

from tests.support.fault_scenarios import Workspace, start_worker
from tests.support.fault_stack import FaultStack
from tests.support.processors import is_flaky
from tests.support.stacks import poll_until_finished

pytestmark = pytest.mark.faults

BROKEN = ["item-4", "item-9", "item-17"]
FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def test_transient_first_attempt_failures_complete_with_attempts_per_item(
    stack: FaultStack, workspace: Workspace
) -> None:
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


def test_tolerated_failures_complete_with_nulls_then_restart_runs_exactly_them(
    stack: FaultStack, workspace: Workspace, webhook: httpx.Client
) -> None:
    """Threshold 3 through the webhook: Completed with three nulls; after a fix, restart executes exactly those three."""
    worker = start_worker(stack, workspace, FANOUT_TEST_FAIL=",".join(BROKEN))
    started = webhook.post(
        "/api/start-fanout", json={"count": 20, "tolerated_failure_count": 3, "instance_id": "redrive"}
    )
    assert started.status_code == 202, started.text
    links = started.json()
    done = poll_until_finished(webhook, links["statusQueryGetUri"], timeout=240)
    assert done.json()["runtimeStatus"] == "Completed", done.text
    output = done.json()["output"]
    assert [f"item-{i + 1}" for i, value in enumerate(output) if value is None] == BROKEN
    assert [(f["item"], f["attempts"]) for f in done.json()["failures"]] == [(item, 1) for item in BROKEN]

    stack.local.stop_worker(worker)
    workspace.clear_executions()
    start_worker(stack, workspace)
    assert webhook.post(links["restartPostUri"]).status_code in (200, 202)
    done = poll_until_finished(webhook, links["statusQueryGetUri"], timeout=240)
    assert done.json()["output"] == [f"Processed item-{i}" for i in range(1, 21)], done.text
    assert sorted(workspace.executed()) == sorted(BROKEN) and set(workspace.executed().values()) == {1}

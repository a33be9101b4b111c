"""Item failures on a real stack: transient ones are retried, permanent ones fail or are tolerated, then redriven."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from uuid import UUID

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


@dataclass
class BrokenRuns:
    """Two finished runs of 20 items of which BROKEN always fail: one started on Prefect with no failure
    tolerated, and one (`redrive`) started through the webhook with three tolerated."""

    failing: UUID
    tolerated: dict[str, str]
    """The webhook's links of the second run."""


@pytest.fixture(scope="module")
def broken_runs(stack: FaultStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokenRuns]:
    """The two runs, side by side on one worker, which is stopped once both have ended."""
    workspace = Workspace(tmp_path_factory.mktemp("broken-items"), storage=stack.results)
    stack.cancel_unfinished()
    local = stack.local
    try:
        start_worker(stack, workspace, FANOUT_TEST_FAIL=",".join(BROKEN))
        failing = stack.start_run({"count": 20})
        with httpx.Client(base_url=local.webhook_url, headers=local.webhook_headers, timeout=30) as client:
            started = client.post(
                "/api/start-fanout", json={"count": 20, "tolerated_failure_count": 3, "instance_id": "redrive"}
            )
            assert started.status_code == 202, started.text
            poll_until_finished(client, started.json()["statusQueryGetUri"], timeout=240)
        stack.wait_for(failing, FINISHED, timeout=240)
    finally:
        stack.stop_workers()
    yield BrokenRuns(failing, started.json())
    stack.cancel_unfinished()


def test_permanent_failures_fail_the_run_naming_exactly_them(stack: FaultStack, broken_runs: BrokenRuns) -> None:
    """Three broken items, threshold 0: the run Fails and its message and report name exactly those three."""
    run = stack.read_run(broken_runs.failing)
    assert run.state.type.value == "FAILED", stack.history(broken_runs.failing)
    assert "3 of 20 items failed: item-4: ValueError: item-4 is broken; item-9" in (run.state.message or "")
    assert [r.item for r in stack.item_report(broken_runs.failing) if r.status == "failed"] == BROKEN


def test_tolerated_failures_complete_with_nulls_then_restart_runs_exactly_them(
    stack: FaultStack, broken_runs: BrokenRuns, workspace: Workspace, webhook: httpx.Client
) -> None:
    """Threshold 3 through the webhook: Completed with three nulls; after a fix, restart executes exactly those three."""
    links = broken_runs.tolerated
    done = webhook.get(links["statusQueryGetUri"])
    assert done.status_code == 200 and done.json()["runtimeStatus"] == "Completed", done.text
    output = done.json()["output"]
    assert [f"item-{i + 1}" for i, value in enumerate(output) if value is None] == BROKEN
    assert [(f["item"], f["attempts"]) for f in done.json()["failures"]] == [(item, 1) for item in BROKEN]

    start_worker(stack, workspace)
    assert webhook.post(links["restartPostUri"]).status_code in (200, 202)
    done = poll_until_finished(webhook, links["statusQueryGetUri"], timeout=240)
    assert done.json()["output"] == [f"Processed item-{i}" for i in range(1, 21)], done.text
    assert sorted(workspace.executed()) == sorted(BROKEN) and set(workspace.executed().values()) == {1}

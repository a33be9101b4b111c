"""The Prefect server restarts mid-run, or a person terminates a run: the outcome stays right."""

from __future__ import annotations

import asyncio
import time

import pytest
from prefect.client.orchestration import PrefectClient

from deployments.runs import PrefectRuns, record
from tests.faults.scenarios import Workspace, start_worker, wait_until
from tests.support.fault_stack import FaultStack

pytestmark = pytest.mark.faults

FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def test_server_restart_mid_run_still_completes(stack: FaultStack, workspace: Workspace) -> None:
    """Stop the server at a quarter of the items and start it again on the same database: the run Completes."""
    start_worker(stack, workspace, FANOUT_TEST_SLEEP="1", FANOUT_MAX_PARALLEL="4")
    run_id = stack.start_run({"count": 120, "instance_id": "server-restart"})
    wait_until(lambda: len(workspace.checkpointed("server-restart")) >= 30, 180, "a quarter of the items")
    stack.restart_server()
    run = stack.wait_for(run_id, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=420)
    assert run.state.type.value == "COMPLETED", stack.history(run_id)
    assert stack.result(run_id) == [f"Processed item-{i}" for i in range(1, 121)]


def test_no_item_starts_after_the_run_is_terminated(stack: FaultStack, workspace: Workspace) -> None:
    """Terminate (the status API's cancel) while items run: after Cancelled, no item starts."""
    start_worker(stack, workspace, FANOUT_TEST_SLEEP="0.5", FANOUT_MAX_PARALLEL="2")
    run_id = stack.start_run({"count": 80, "instance_id": "terminated"})
    wait_until(lambda: len(workspace.checkpointed("terminated")) >= 6, 180, "some items finishing")

    async def terminate() -> None:
        async with PrefectClient(stack.server.api_url) as client:
            await PrefectRuns(client, "fan-out-fan-in/faults", None).terminate(record(await client.read_flow_run(run_id)))
    asyncio.run(terminate())
    run = stack.wait_for(run_id, FINISHED, timeout=120, poll=0.5)
    assert run.state.type.value == "CANCELLED", stack.history(run_id)
    cancelled_at = run.state.timestamp.timestamp()
    time.sleep(10)
    assert workspace.started_after(cancelled_at) == []
    assert sum(workspace.executed().values()) < 80

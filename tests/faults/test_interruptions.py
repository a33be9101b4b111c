"""The Prefect server restarts mid-run, or a person terminates a run: the outcome stays right."""

from __future__ import annotations

import time
from uuid import UUID

import httpx
import pytest

from tests.support.fault_scenarios import Workspace, flow_process, start_worker, wait_until
from tests.support.fault_stack import FaultStack
from tests.support.processes import alive
from tests.support.stacks import poll_until_finished

pytestmark = pytest.mark.faults


def test_server_restart_mid_run_still_completes(stack: FaultStack, workspace: Workspace) -> None:
    """Stop the server at a quarter of the items and start it again on the same database: the run Completes."""
    start_worker(stack, workspace, FANOUT_TEST_SLEEP="0.5", FANOUT_MAX_PARALLEL="4")
    run_id = stack.start_run({"count": 80, "instance_id": "server-restart"})
    wait_until(lambda: len(workspace.checkpointed("server-restart")) >= 20, 180, "a quarter of the items")
    stack.restart_server()
    run = stack.wait_for(run_id, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=420)
    assert run.state.type.value == "COMPLETED", stack.history(run_id)
    assert stack.result(run_id) == [f"Processed item-{i}" for i in range(1, 81)]


def test_no_item_starts_after_the_run_is_terminated(
    stack: FaultStack, workspace: Workspace, webhook: httpx.Client
) -> None:
    """Terminate through the webhook while items run: once the run is Terminated, no item starts (by the time
    its flow process has exited, none started after the Terminated answer)."""
    start_worker(stack, workspace, FANOUT_TEST_SLEEP="0.5", FANOUT_MAX_PARALLEL="2")
    links = webhook.post("/api/start-fanout", json={"count": 80, "instance_id": "terminated"}).json()
    wait_until(lambda: len(workspace.checkpointed("terminated")) >= 6, 180, "some items finishing")
    assert webhook.post(links["terminatePostUri"]).status_code in (200, 202)
    done = poll_until_finished(webhook, links["statusQueryGetUri"], timeout=120)
    terminated_at = time.time()
    assert done.json()["runtimeStatus"] == "Terminated", done.text
    run_id = UUID(str(links["uiUrl"]).rstrip("/").rsplit("/", 1)[1])
    flow_pid = flow_process(stack, run_id)
    wait_until(lambda: not alive(flow_pid), 60, "the terminated run's flow process to exit")
    assert workspace.started_after(terminated_at) == []
    assert sum(workspace.executed().values()) < 80

"""The Prefect server goes away, and the worker with its flow process dies while it is away: when the server
is back (without its automations' windows) and a worker starts, the run left Running is resumed."""

from __future__ import annotations

import sqlite3
import time

import pytest

from fanout.core.settings import get_settings
from fanout.localstack.stack import WARM_WORKER
from fanout.storage.checkpoints import item_digest
from tests.support.fault_scenarios import Workspace, start_worker, wait_until
from tests.support.fault_stack import FaultStack

pytestmark = pytest.mark.faults

COUNT = 60


@pytest.mark.parametrize("worker_type", [WARM_WORKER, "process"])
def test_a_run_orphaned_while_the_server_was_down_is_resumed_once_it_is_back(
    stack: FaultStack, workspace: Workspace, worker_type: str
) -> None:
    """Warm worker: its own pass at start resumes the run; `process` worker: the stack's pass (as `fanout up`
    makes one at start and after restarting the server). Only items in flight ran again."""
    if stack.local.database_url:
        pytest.skip("drops the automations' windows from the SQLite database")
    env = {"FANOUT_TEST_SLEEP": "0.4", "FANOUT_MAX_PARALLEL": "4"}
    if worker_type == WARM_WORKER:
        env["FANOUT_SILENT_AFTER_SECONDS"] = "10"  # the floor: its pass at start waits this long for a sign of life
    worker = start_worker(stack, workspace, worker_type, **env)
    instance = f"server-away-{worker_type}"
    run_id = stack.start_run({"count": COUNT, "instance_id": instance})
    wait_until(lambda: len(workspace.checkpointed(instance)) >= COUNT // 3, 180, "a third of the items")
    server = stack.local.server
    assert server is not None
    server.stop()
    digests = workspace.checkpointed(instance)
    stack.kill_worker_and_runs(worker)
    with sqlite3.connect(server.home / "prefect.db") as database:
        database.execute("DELETE FROM automation_bucket")
    server.start()
    start_worker(stack, workspace, worker_type, **env)
    if worker_type == "process":
        stack.local.reconcile_in_background()
    began = time.monotonic()
    run = stack.wait_for(run_id, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=240)
    history = stack.history(run_id)
    assert run.state.type.value == "COMPLETED", history
    assert run.run_count == 2 and any("no living process after a restart" in state for state in history), history
    assert time.monotonic() - began < 60 + get_settings().silent_after_seconds
    finished = {f"item-{i}" for i in range(1, COUNT + 1) if item_digest(f"item-{i}") in digests}
    executions = workspace.executed()
    assert all(executions[item] == 1 for item in finished)
    assert sum(times > 1 for times in executions.values()) <= 4

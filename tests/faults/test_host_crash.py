"""A host dies mid-run: its liveness events stop, Prefect's automations retry the same run, nobody helps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fault_scenarios import KillNineResult, Workspace, kill_nine_at_half, start_worker
from tests.support.fault_stack import FaultStack

pytestmark = pytest.mark.faults

COUNT = 80
"""Slow items (0.4 s, 4 at a time): the kill at half comes some seconds into the run, with items in flight."""


@pytest.fixture(scope="module")
def kill_nine(stack: FaultStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KillNineResult]:
    """One kill -9 at half of COUNT slow items (resumed ~FANOUT_SILENT_AFTER_SECONDS after the kill);
    its workers are stopped before any test reads the result, so they pick up no other run."""
    try:
        result = kill_nine_at_half(
            stack, Workspace(tmp_path_factory.mktemp("kill-nine"), storage=stack.results), count=COUNT
        )
    finally:
        stack.stop_workers()
        stack.cancel_unfinished()
    yield result


def test_kill_nine_of_worker_and_run_completes_on_its_own(kill_nine: KillNineResult) -> None:
    """SIGKILL at half of the items, fresh worker: Completed, finished items ran once, output as uninterrupted."""
    result = kill_nine
    assert result.state == "COMPLETED", result.history
    assert result.output == [f"Processed item-{i}" for i in range(1, COUNT + 1)]
    assert result.run_count >= 2, "the same flow run was retried"
    assert COUNT // 2 <= len(result.finished_before_kill) < COUNT
    assert all(result.executions[item] == 1 for item in result.finished_before_kill)
    assert set(result.executions) == {f"item-{i}" for i in range(1, COUNT + 1)}
    assert not set(result.reexecuted) & result.finished_before_kill and len(result.reexecuted) <= 4


def test_idempotency_keys_are_stable_across_the_crash(kill_nine: KillNineResult) -> None:
    """Before and after the kill, every execution of an item saw `<instance>/<item>` (instance = the run id)."""
    assert kill_nine.keys_seen == {f"item-{i}": {f"{kill_nine.run_id}/item-{i}"} for i in range(1, COUNT + 1)}


def test_a_run_that_keeps_crashing_fails_after_the_retry_cap(stack: FaultStack, workspace: Workspace) -> None:
    """A poison run is retried max_auto_retries (1) times, then marked Failed with a message saying so."""
    start_worker(stack, workspace, FANOUT_TEST_CRASH_ALWAYS="item-2", FANOUT_MAX_PARALLEL="1")
    run_id = stack.start_run({"count": 3})
    run = stack.wait_for(run_id, {"FAILED", "COMPLETED", "CANCELLED"}, timeout=300)
    history = stack.history(run_id)
    assert run.state.type.value == "FAILED", history
    message = (run.state.message or "").lower()  # the warm worker or the give-up automation says it
    assert "automatic retries" in message and "1" in message, history
    assert run.run_count == 2 and sum(state.startswith("AwaitingRetry") for state in history) == 1, history
    assert workspace.executed()["item-2"] == 2

"""Standby warm workers: a run whose host died is resumed by one of them, once; a live run never is."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import suppress

import pytest

from fanout.core.settings import get_settings
from fanout.localstack.stack import WARM_WORKER
from fanout.service.resuming import SILENT_LABEL
from tests.support.fault_scenarios import (
    CrashResult,
    Workspace,
    crash_at_half,
    flow_process,
    start_worker,
    wait_standing_by,
    wait_until,
)
from tests.support.fault_stack import FaultStack
from tests.support.processes import alive, descendants

pytestmark = pytest.mark.faults

COUNT = 40
STANDBY_MESSAGE = "a standby worker found it dead"


@pytest.fixture(scope="module")
def host_death(stack: FaultStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashResult]:
    """40 slow items through the webhook on one of three warm workers; at half, that worker and its flow
    process are SIGKILLed while the other two stand by; a client polls the status URL until its 200."""
    workspace = Workspace(tmp_path_factory.mktemp("standby"), storage=stack.results)
    try:
        result = crash_at_half(stack, workspace, "host", count=COUNT, worker_type=WARM_WORKER, standbys=2)
    finally:
        stack.stop_workers()
        stack.cancel_unfinished()
    yield result


def test_a_standby_resumes_the_run_of_a_dead_host(host_death: CrashResult) -> None:
    """The run is put back to AwaitingRetry by a standby (not the automations) and Completes whole."""
    assert host_death.state == "COMPLETED", host_death.history
    assert host_death.output == [f"Processed item-{i}" for i in range(1, COUNT + 1)]
    (resumed,) = [line for line in host_death.history if line.startswith("AwaitingRetry")]
    assert "fell silent" in resumed, host_death.history
    assert not set(host_death.reexecuted) & host_death.finished_before_kill and len(host_death.reexecuted) <= 4


def test_two_standbys_resume_the_run_once(host_death: CrashResult) -> None:
    """Two standbys notice the same silence: one AwaitingRetry, one more attempt (run count 2)."""
    assert host_death.run_count == 2, host_death.history
    assert sum(line.startswith("AwaitingRetry") for line in host_death.history) == 1, host_death.history


def test_the_client_sees_resuming_and_no_200_before_the_end(host_death: CrashResult) -> None:
    """Between the kill and the resumed attempt the status says `resuming`; the first 200 is Completed."""
    assert host_death.kill_to_resuming is not None, host_death.statuses
    assert host_death.first_final == "200 Completed", host_death.statuses
    assert all(status.split(" ")[1] in ("Pending", "Running") for status in host_death.statuses[:-1])


def test_a_run_that_keeps_saying_it_is_alive_is_never_resumed(stack: FaultStack, workspace: Workspace) -> None:
    """Its worker is killed but its flow process lives on and keeps emitting alive events: a standby
    watching it for several windows leaves it alone, and it Completes in its first attempt."""
    env = {"FANOUT_TEST_SLEEP": "0.4", "FANOUT_MAX_PARALLEL": "2"}
    first = start_worker(stack, workspace, WARM_WORKER, **env)
    wait_standing_by([first, start_worker(stack, workspace, WARM_WORKER, **env)])  # the other one stands by
    run_id = stack.start_run({"count": 60})
    instance = str(run_id)
    wait_until(lambda: len(workspace.checkpointed(instance)) >= 4, 120, "the first items")
    flow_pid = flow_process(stack, run_id)
    if flow_pid not in descendants(first.process.pid):
        first = next(worker for worker in stack.local.workers if worker is not first)
    spared = {flow_pid, *descendants(flow_pid)}
    for pid in {first.process.pid, *descendants(first.process.pid)} - spared:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # not the process group: the flow process is in it
    wait_until(lambda: not alive(first.process.pid), 10, "the worker gone")
    watched_from = time.monotonic()
    run = stack.wait_for(run_id, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=180, poll=0.5)
    history = stack.history(run_id)
    window = get_settings().standby_silent_seconds
    assert time.monotonic() - watched_from > 2 * window, "the standby watched the live run for two windows"
    assert run.state.type.value == "COMPLETED" and run.run_count == 1, history
    assert not any(line.startswith("AwaitingRetry") for line in history), history
    assert not (run.labels or {}).get(SILENT_LABEL), run.labels

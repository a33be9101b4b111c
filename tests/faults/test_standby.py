"""Standby warm workers: a run whose host died is resumed by one of them, once; a live run never is."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pytest

from fanout.core.settings import worker_settings
from fanout.localstack.stack import WARM_WORKER
from fanout.service.resuming import SILENT_LABEL
from tests.support.fault_scenarios import (
    CrashResult,
    Workspace,
    crash_at_half,
    flow_process,
    wait_until,
)
from tests.support.fault_stack import FaultStack
from tests.support.processes import alive, descendants

pytestmark = pytest.mark.faults

COUNT = 40


@dataclass
class HostDeath:
    """The crash the standbys resumed, and the workspace whose two surviving workers still stand by."""

    crash: CrashResult
    workspace: Workspace


@dataclass
class LiveRun:
    """A run whose worker was SIGKILLed while its flow process lived on."""

    state: str
    run_count: int
    history: list[str]
    labels: dict[str, Any]
    watched: float  # seconds from the worker's death to the run's end


@pytest.fixture(scope="module")
def host_death(stack: FaultStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostDeath]:
    """40 slow items through the webhook on one of three warm workers; at half, that worker and its flow
    process are SIGKILLed while the other two stand by; a client polls the status URL until its 200.
    The two survivors keep standing by for the module's other scenario."""
    workspace = Workspace(tmp_path_factory.mktemp("standby"), storage=stack.results)
    try:
        yield HostDeath(
            crash_at_half(stack, workspace, "host", count=COUNT, worker_type=WARM_WORKER, standbys=2), workspace
        )
    finally:
        stack.stop_workers()
        stack.cancel_unfinished()


@pytest.fixture(scope="module")
def live_run(stack: FaultStack, host_death: HostDeath) -> LiveRun:
    """On the two workers left: a run of 100 slow items whose worker is SIGKILLed once its first items are
    done, while its flow process lives on and goes on saying it is alive; the other worker stands by."""
    workers = [worker for worker in stack.local.workers if alive(worker.process.pid)]
    run_id = stack.start_run({"count": 100})
    wait_until(lambda: len(host_death.workspace.checkpointed(str(run_id))) >= 4, 120, "the first items")
    flow_pid = flow_process(stack, run_id)
    worker = next(worker for worker in workers if flow_pid in descendants(worker.process.pid))
    spared = {flow_pid, *descendants(flow_pid)}
    for pid in {worker.process.pid, *descendants(worker.process.pid)} - spared:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)  # not the process group: the flow process is in it
    wait_until(lambda: not alive(worker.process.pid), 10, "the worker gone")
    died = time.monotonic()
    run = stack.wait_for(run_id, {"COMPLETED", "FAILED", "CANCELLED"}, timeout=180, poll=0.5)
    return LiveRun(
        run.state.type.value, run.run_count, stack.history(run_id), dict(run.labels or {}), time.monotonic() - died
    )


def test_a_standby_resumes_the_run_of_a_dead_host(host_death: HostDeath) -> None:
    """The run is put back to AwaitingRetry by a standby (not the automations) and Completes whole."""
    crash = host_death.crash
    assert crash.state == "COMPLETED", crash.history
    assert crash.output == [f"Processed item-{i}" for i in range(1, COUNT + 1)]
    (resumed,) = [line for line in crash.history if line.startswith("AwaitingRetry")]
    assert "fell silent" in resumed, crash.history
    assert not set(crash.reexecuted) & crash.finished_before_kill and len(crash.reexecuted) <= 4


def test_two_standbys_resume_the_run_once(host_death: HostDeath) -> None:
    """Two standbys notice the same silence: one AwaitingRetry, one more attempt (run count 2)."""
    crash = host_death.crash
    assert crash.run_count == 2, crash.history
    assert sum(line.startswith("AwaitingRetry") for line in crash.history) == 1, crash.history


def test_the_client_sees_resuming_and_no_200_before_the_end(host_death: HostDeath) -> None:
    """Between the kill and the resumed attempt the status says `resuming`; the first 200 is Completed."""
    crash = host_death.crash
    assert crash.kill_to_resuming is not None, crash.statuses
    assert crash.first_final == "200 Completed", crash.statuses
    assert all(status.split(" ")[1] in ("Pending", "Running") for status in crash.statuses[:-1])


def test_a_run_that_keeps_saying_it_is_alive_is_never_resumed(live_run: LiveRun) -> None:
    """Its worker is dead but its flow process goes on emitting alive events: the standby watching it for
    more than two windows leaves it alone, and it Completes in its first attempt, never marked silent."""
    assert live_run.watched > 2 * worker_settings().standby_silent_seconds, "the standby had time to misjudge it"
    assert live_run.state == "COMPLETED" and live_run.run_count == 1, live_run.history
    assert not any(line.startswith("AwaitingRetry") for line in live_run.history), live_run.history
    assert not live_run.labels.get(SILENT_LABEL), live_run.labels

"""The warm worker's decisions about an ended flow-run process, without a server."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.client.schemas.objects import FlowRun, State
from prefect.client.schemas.responses import (
    OrchestrationResult,
    SetStateStatus,
    StateAcceptDetails,
    StateRejectDetails,
)
from prefect.states import Cancelling, Completed, Paused, Running, Scheduled

from fanout.localstack.local_server import read_state, server_folder
from fanout.worker.warm_processes import preload_modules
from fanout.worker.warm_recovery import (
    CANCELLED,
    CRASHED,
    GAVE_UP,
    RESUMED,
    UNCHANGED,
    ExitOutcome,
    describe_exit,
    recover_after_exit,
    retry_allowed,
)


def test_a_crash_is_retried_while_the_run_count_is_within_the_cap() -> None:
    """Attempts 1..max may be followed by another; the attempt after the last retry may not."""
    assert [retry_allowed(count, 3) for count in (1, 2, 3, 4)] == [True, True, True, False]


def test_a_run_that_died_before_running_is_not_retried() -> None:
    """run_count 0 (never reached Running) is not retried: nothing would bound the loop."""
    assert not retry_allowed(0, 3)


def test_no_retries_configured_means_none() -> None:
    """FANOUT_MAX_AUTO_RETRIES=0 retries nothing."""
    assert not retry_allowed(1, 0)


def test_an_exit_by_signal_is_named() -> None:
    """multiprocessing reports a signal as a negative exit code; the message names the signal."""
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(1) == "exit code 1"


def test_the_forkserver_preloads_the_flow_and_the_processor_module() -> None:
    """The processor's module is imported up front along with the engine entry and the flow."""
    modules = preload_modules("flows.http_enrich:enrich")
    assert modules[:2] == ["fanout.worker.warm_child", "fanout.seed"]
    assert "flows.http_enrich" in modules


def test_a_recorded_server_whose_pid_is_not_a_prefect_server_is_ignored(tmp_path: Path) -> None:
    """A state file naming a pid that is no Prefect server (here: this test) is not trusted."""
    folder = server_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "server.json").write_text(json.dumps({"pid": os.getpid(), "port": 1, "home": str(folder)}))
    assert read_state(tmp_path) is None


class OneRunClient:
    """Stands in for Prefect's client: one flow run in `state`; records each proposed state and answers `answers`."""

    def __init__(self, state: State, run_count: int, answers: dict[str, SetStateStatus] | None = None) -> None:
        self.run = FlowRun(id=uuid4(), flow_id=uuid4(), name="run", state=state, run_count=run_count)
        self.answers = answers or {}
        self.proposed: list[State] = []

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        return self.run

    async def set_flow_run_state(
        self, flow_run_id: UUID, state: State, force: bool = False
    ) -> OrchestrationResult[Any]:
        self.proposed.append(state)
        status = self.answers.get(state.name or "", SetStateStatus.ACCEPT)
        if status == SetStateStatus.ACCEPT:
            return OrchestrationResult(state=state, status=status, details=StateAcceptDetails())
        return OrchestrationResult(state=None, status=status, details=StateRejectDetails(reason="run is Cancelling"))


def recover(client: OneRunClient, max_auto_retries: int = 3, exit_code: int = -9) -> ExitOutcome:
    return asyncio.run(recover_after_exit(client, client.run.id, 4242, exit_code, max_auto_retries))  # type: ignore[arg-type]


class UnreadableClient(OneRunClient):
    """A client that fails the test if the worker reads or changes the run."""

    async def read_flow_run(self, flow_run_id: UUID) -> FlowRun:
        raise AssertionError("the run was read")


def test_a_process_that_exited_0_is_left_unchanged_without_asking_the_server() -> None:
    """Exit 0 means the engine recorded the run's outcome: the worker neither reads nor changes the run."""
    client = UnreadableClient(Running(), run_count=1)
    assert recover(client, exit_code=0).action == UNCHANGED
    assert client.proposed == []


def test_a_process_killed_mid_run_goes_straight_back_to_awaiting_retry() -> None:
    """A SIGKILLed attempt with retries left: one transition, to AwaitingRetry, never through a final state."""
    client = OneRunClient(Running(), run_count=1)
    outcome = recover(client)
    assert outcome.action == RESUMED
    assert [state.name for state in client.proposed] == ["AwaitingRetry"]
    assert "Flow run process 4242 ended with signal SIGKILL" in (client.proposed[0].message or "")


def test_an_awaiting_retry_prefect_does_not_accept_leaves_the_run_crashed_saying_why() -> None:
    """If Prefect rejects the AwaitingRetry, the run is reported Crashed (the automations' cue) with the reason."""
    client = OneRunClient(Running(), run_count=1, answers={"AwaitingRetry": SetStateStatus.REJECT})
    outcome = recover(client)
    assert outcome.action == CRASHED
    assert [state.name for state in client.proposed] == ["AwaitingRetry", "Crashed"]
    assert "REJECT" in outcome.message and "run is Cancelling" in outcome.message


def test_a_crash_past_its_retries_is_reported_crashed_then_failed() -> None:
    """The attempt after the last retry dies: Crashed, then Failed saying the retries are exhausted."""
    client = OneRunClient(Running(), run_count=4)
    outcome = recover(client, max_auto_retries=3)
    assert outcome.action == GAVE_UP
    assert [state.name for state in client.proposed] == ["Crashed", "Failed"]
    assert "Automatic retries exhausted (3 allowed)" in outcome.message


@pytest.mark.parametrize("state", [Completed(), Scheduled(), Paused()], ids=lambda state: state.name)
def test_a_run_already_where_it_belongs_is_left_unchanged(state: State) -> None:
    """A process that ended after its run finished, was put back to run or paused: no state is proposed."""
    client = OneRunClient(state, run_count=1)
    assert recover(client).action == UNCHANGED
    assert client.proposed == []


def test_a_cancelling_run_whose_process_ended_is_cancelled() -> None:
    """Cancelling, then the process ended: the cancel is finished (Cancelled), not retried."""
    client = OneRunClient(Cancelling(), run_count=1)
    outcome = recover(client)
    assert outcome.action == CANCELLED
    assert [state.type.value for state in client.proposed] == ["CANCELLED"]

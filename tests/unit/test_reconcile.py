"""The reconcile pass after a restart: which runs it resumes, and that it does so once
(src/fanout/service/reconcile.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

from prefect.client.schemas.objects import FlowRun, State
from prefect.client.schemas.responses import SetStateStatus
from prefect.filesystems import LocalFileSystem
from prefect.states import Completed, Pending, Running

from fanout.core.settings import FanoutSettings
from fanout.service.reconcile import CLAIMED_ELSEWHERE, GAVE_UP, RESUMED, reconcile
from fanout.storage import lease

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
SETTINGS = FanoutSettings(_env_file=None, max_auto_retries=2)


class FakeClient:
    """Prefect's API as a reconcile pass sees it: runs with states, alive events, state changes."""

    def __init__(self) -> None:
        self.runs: dict[UUID, FlowRun] = {}
        self.alive: dict[UUID, list[datetime]] = {}
        self.set_states: list[tuple[UUID, str]] = []
        self.on_sleep: list[Any] = []
        self.caught_up = True
        self.probes: list[str] = []

    def add(self, state: State[Any], run_count: int = 1, instance: str | None = None) -> FlowRun:
        state.timestamp = T0
        run = FlowRun(id=uuid4(), flow_id=uuid4(), state=state, run_count=run_count)
        run.parameters = {"request": {"count": 3, **({"instance_id": instance} if instance else {})}}
        self.runs[run.id] = run
        return run

    async def read_flow_runs(self, **_: Any) -> list[FlowRun]:
        return [
            run.model_copy()
            for run in self.runs.values()
            if run.state and run.state.type.value in ("RUNNING", "PENDING")
        ]

    async def read_flow_run(self, run_id: UUID) -> FlowRun:
        return self.runs[run_id].model_copy()

    async def request(self, method: str, path: str, json: Any) -> Any:
        self.probes += [event["id"] for event in json]
        return SimpleNamespace(raise_for_status=lambda: None)

    async def read_events(self, filter: Any, limit: int) -> Any:
        if filter.resource is None:  # the probe event: stored at once, unless the server lags
            return SimpleNamespace(events=[SimpleNamespace(occurred=T0)] if self.caught_up else [])
        run_id = UUID(filter.resource.id[0].rsplit(".", 1)[-1])
        since = filter.occurred.since
        events = sorted((at for at in self.alive.get(run_id, []) if at >= since), reverse=True)
        return SimpleNamespace(events=[SimpleNamespace(occurred=at) for at in events[:limit]])

    async def set_flow_run_state(self, run_id: UUID, state: State[Any], force: bool = False) -> Any:
        self.set_states.append((run_id, state.name or state.type.value))
        self.runs[run_id].state = state
        return SimpleNamespace(status=SetStateStatus.ACCEPT, details=None)


def one_pass(client: FakeClient, folder: Path, now: datetime = T0 + timedelta(minutes=5)) -> list[Any]:
    async def sleep(seconds: float) -> None:
        for change in client.on_sleep:
            change()

    storage = LocalFileSystem(basepath=str(folder))
    return asyncio.run(reconcile(client, SETTINGS, storage, ["fanout"], sleep=sleep, now=lambda: now))  # type: ignore[arg-type]


def test_a_running_run_that_fell_silent_is_put_back_to_awaiting_retry(tmp_path: Path) -> None:
    """Alive events before the restart, none during the watch: resumed, the same flow run."""
    client = FakeClient()
    run = client.add(Running(), instance="orders")
    client.alive[run.id] = [T0 + timedelta(seconds=5)]
    (done,) = one_pass(client, tmp_path)
    assert done.action == RESUMED and client.set_states == [(run.id, "AwaitingRetry")]
    assert "no living process after a restart" in done.message


def test_a_run_that_says_it_is_alive_during_the_watch_is_left_alone(tmp_path: Path) -> None:
    """An alive event after the watch began: the run is working, nothing is changed."""
    client = FakeClient()
    run = client.add(Running())
    client.alive[run.id] = [T0 + timedelta(seconds=5), T0 + timedelta(minutes=5, seconds=3)]
    assert one_pass(client, tmp_path) == [] and client.set_states == []


def test_a_run_that_changes_state_during_the_watch_is_left_alone(tmp_path: Path) -> None:
    """A run that moved on (completed) while the pass watched is not touched."""
    client = FakeClient()
    run = client.add(Running())
    client.alive[run.id] = [T0]
    client.on_sleep.append(lambda: setattr(client.runs[run.id], "state", Completed()))
    assert one_pass(client, tmp_path) == [] and client.set_states == []


def test_a_run_that_never_said_it_was_alive_is_left_to_the_automations(tmp_path: Path) -> None:
    """No alive event at all in its attempt: not fanout's liveness, so not judged here."""
    client = FakeClient()
    client.add(Running())
    assert one_pass(client, tmp_path) == [] and client.set_states == []


def test_a_pending_run_whose_worker_died_is_rescheduled(tmp_path: Path) -> None:
    """Pending through the whole watch, never run (run count 0): put back to AwaitingRetry."""
    client = FakeClient()
    run = client.add(Pending(), run_count=0)
    (done,) = one_pass(client, tmp_path)
    assert done.action == RESUMED and client.set_states == [(run.id, "AwaitingRetry")]


def test_a_run_past_its_retries_is_failed_saying_so(tmp_path: Path) -> None:
    """Run count above max_auto_retries: Crashed, then Failed with why."""
    client = FakeClient()
    run = client.add(Running(), run_count=3)
    client.alive[run.id] = [T0]
    (done,) = one_pass(client, tmp_path)
    assert done.action == GAVE_UP and [name for _, name in client.set_states] == ["Crashed", "Failed"]
    assert "Automatic retries exhausted (2 allowed)" in done.message


def test_two_reconcilers_resume_an_orphan_once(tmp_path: Path) -> None:
    """The second pass over the same stuck state finds the claim taken and changes nothing."""
    client = FakeClient()
    run = client.add(Running(), instance="orders")
    client.alive[run.id] = [T0]
    stuck = client.runs[run.id].state
    first = one_pass(client, tmp_path)
    client.runs[run.id].state = stuck  # as a second worker read it before the first one's change
    second = one_pass(client, tmp_path)
    assert [done.action for done in first + second] == [RESUMED, CLAIMED_ELSEWHERE]
    assert client.set_states == [(run.id, "AwaitingRetry")]
    assert (tmp_path / "fanout" / "orders" / "resumes").is_dir()


def test_silence_is_not_believed_while_stored_events_lag(tmp_path: Path) -> None:
    """The probe event is not found stored (a lagging persister): nothing is judged."""
    client = FakeClient()
    run = client.add(Running())
    client.alive[run.id] = [T0]
    client.caught_up = False
    assert one_pass(client, tmp_path) == [] and client.set_states == []


def test_a_run_whose_live_process_here_holds_its_lease_is_left_alone(tmp_path: Path) -> None:
    """No alive events, but the run's own process on this host renews its instance lease: alive."""
    client = FakeClient()
    run = client.add(Running(), instance="orders")
    client.alive[run.id] = [T0]
    lease.take(LocalFileSystem(basepath=str(tmp_path)), "orders", str(run.id), 60)  # held by this very process
    assert one_pass(client, tmp_path) == [] and client.set_states == []

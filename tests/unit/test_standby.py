"""The standby warm worker's judgement of silence: whom it watches, when it acts, and that it acts once
(src/fanout/worker/standby.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import anyio
import pytest
from prefect.client.schemas.objects import FlowRun, State
from prefect.client.schemas.responses import SetStateStatus
from prefect.events import Event
from prefect.filesystems import LocalFileSystem
from prefect.states import Completed, Running

from fanout.core.liveness import ALIVE_EVENT, QUIET_EVENT
from fanout.core.settings import WarmWorkerSettings
from fanout.service.resuming import SILENT_LABEL
from fanout.worker.standby import PROBE_EVENT, SilenceWatch, Standby

SETTINGS = WarmWorkerSettings(_env_file=None, standby_silent_seconds=4, liveness_seconds=2)
POOL = "fanout"


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def alive_event(run_id: UUID, run_count: int = 1, event: str = ALIVE_EVENT, age: float = 0.0) -> Event:
    return Event(
        event=event,
        occurred=datetime.now(UTC) - timedelta(seconds=age),
        resource={"prefect.resource.id": f"prefect.flow-run.{run_id}", "prefect.run-count": str(run_count)},
    )


class FakeClient:
    """Prefect's API as standbys see it: flow runs, labels, state changes, and probe events that come back
    through every standby's stream (after `before_probe` events, as a server would deliver them)."""

    def __init__(self) -> None:
        self.runs: dict[UUID, FlowRun] = {}
        self.labels: list[tuple[UUID, dict[str, str]]] = []
        self.set_states: list[tuple[UUID, str]] = []
        self.standbys: list[Standby] = []
        self.before_probe: list[Event] = []
        self.clock: Clock | None = None
        self.deliver_probes = True

    def add(self, state: State[Any], run_count: int = 1, pool: str = POOL) -> FlowRun:
        run = FlowRun(id=uuid4(), flow_id=uuid4(), state=state, run_count=run_count, work_pool_name=pool)
        run.parameters = {"request": {"count": 3, "instance_id": f"i-{run.id.hex[:8]}"}}
        self.runs[run.id] = run
        return run

    async def read_flow_run(self, run_id: UUID) -> FlowRun:
        await anyio.sleep(0)
        return self.runs[run_id].model_copy()

    async def update_flow_run_labels(self, run_id: UUID, labels: dict[str, str]) -> None:
        self.labels.append((run_id, labels))

    async def request(self, method: str, path: str, json: Any) -> Any:
        (probe,) = json
        event = Event(id=UUID(probe["id"]), event=PROBE_EVENT, resource=probe["resource"], occurred=datetime.now(UTC))
        if self.clock is not None:
            self.clock.now += 0.1
        for standby in self.standbys if self.deliver_probes else []:
            for earlier in self.before_probe:
                standby.hear(earlier)
            standby.hear(event)
        return SimpleNamespace(raise_for_status=lambda: None)

    async def set_flow_run_state(self, run_id: UUID, state: State[Any], force: bool = False) -> Any:
        self.set_states.append((run_id, state.name or state.type.value))
        self.runs[run_id].state = state
        return SimpleNamespace(status=SetStateStatus.ACCEPT, details=None)


def standby(client: FakeClient, folder: Path, clock: Clock, own: set[UUID] | None = None) -> Standby:
    made = Standby(client, SETTINGS, POOL, lambda: own or set(), lambda: LocalFileSystem(basepath=str(folder)))  # type: ignore[arg-type]
    made.watch = SilenceWatch(SETTINGS.standby_silent_seconds, clock)
    client.standbys.append(made)
    return made


def look(*standbys: Standby) -> None:
    """Each standby looks for silent runs once, and settles what it found (together, as on several hosts)."""

    async def looking() -> None:
        async with anyio.create_task_group() as tasks:
            for one in standbys:
                for run_id, run_count in one.watch.silent():
                    tasks.start_soon(one._confirm, run_id, run_count)

    anyio.run(looking)


def test_a_run_silent_past_the_window_is_marked_and_put_back_to_awaiting_retry(tmp_path: Path) -> None:
    """Alive, then silent for the window: labelled `fanout.silent`, then resumed as the same flow run."""
    client, clock = FakeClient(), Clock()
    one = standby(client, tmp_path, clock)
    run = client.add(Running())
    one.hear(alive_event(run.id))
    clock.now += 4
    look(one)
    assert client.set_states == [(run.id, "AwaitingRetry")]
    assert [labels[SILENT_LABEL] != "" for _, labels in client.labels] == [True]
    assert "standby" in (client.runs[run.id].state.message or "")  # type: ignore[union-attr]


def test_a_run_is_not_judged_before_the_window_ends(tmp_path: Path) -> None:
    """Silent for less than `standby_silent_seconds`: nothing is read or changed."""
    client, clock = FakeClient(), Clock()
    one = standby(client, tmp_path, clock)
    run = client.add(Running())
    one.hear(alive_event(run.id))
    clock.now += 3.9
    look(one)
    assert client.set_states == [] and client.labels == []


def test_two_standbys_resume_a_dead_run_once(tmp_path: Path) -> None:
    """Both notice the same silence at once: exactly one AwaitingRetry (the claim on its stuck state)."""
    client, clock = FakeClient(), Clock()
    first, second = standby(client, tmp_path, clock), standby(client, tmp_path, clock)
    run = client.add(Running())
    for one in (first, second):
        one.hear(alive_event(run.id))
    clock.now += 5
    look(first, second)
    assert client.set_states == [(run.id, "AwaitingRetry")]


def test_a_run_heard_from_before_the_probe_came_back_is_left_alone(tmp_path: Path) -> None:
    """The standby's stream lagged: an alive event delivered before its probe keeps the run Running, unmarked."""
    client, clock = FakeClient(), Clock()
    one = standby(client, tmp_path, clock)
    run = client.add(Running())
    one.hear(alive_event(run.id))
    clock.now += 6
    client.before_probe = [alive_event(run.id)]
    client.clock = clock  # the late alive event arrives after the confirmation began
    look(one)
    assert client.set_states == []
    assert [labels[SILENT_LABEL] for _, labels in client.labels][-1] == ""


def test_no_verdict_without_the_probe_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The standby's probe never comes back (its stream is stuck): nothing is resumed, the mark is withdrawn."""
    monkeypatch.setattr("fanout.worker.standby.PROBE_TIMEOUT_SECONDS", 0.05)
    client, clock = FakeClient(), Clock()
    one = standby(client, tmp_path, clock)
    run = client.add(Running())
    one.hear(alive_event(run.id))
    clock.now += 5
    client.deliver_probes = False
    look(one)
    assert client.set_states == []
    assert [labels[SILENT_LABEL] for _, labels in client.labels][-1] == ""
    assert run.id in one.watch and one.watch.silent() == [], "looked at again after a pause, not at once"


@pytest.mark.parametrize(
    ("case", "state", "run_count", "pool", "own"),
    [
        ("finished", Completed(), 1, POOL, False),
        ("a later attempt runs", Running(), 2, POOL, False),
        ("another pool", Running(), 1, "elsewhere", False),
        ("this worker's own run", Running(), 1, POOL, True),
    ],
)
def test_runs_that_are_not_a_standbys_business_are_forgotten(
    tmp_path: Path, case: str, state: State[Any], run_count: int, pool: str, own: bool
) -> None:
    """Silent, but finished, in a later attempt, of another pool or run by this worker: nothing changes."""
    client, clock = FakeClient(), Clock()
    run = client.add(state, run_count=run_count, pool=pool)
    one = standby(client, tmp_path, clock, own={run.id} if own else None)
    one.hear(alive_event(run.id, run_count=1))
    clock.now += 5
    look(one)
    assert client.set_states == [] and client.labels == [], case
    assert run.id not in one.watch


def listening_only() -> Standby:
    """A standby that is only told events (it never reaches Prefect or storage)."""
    return Standby(FakeClient(), SETTINGS, POOL, set, LocalFileSystem)  # type: ignore[arg-type]


def test_a_quiet_event_ends_the_watch() -> None:
    """A run that left its items on purpose (quiet event) is never taken for dead."""
    clock = Clock()
    one = listening_only()
    one.watch = SilenceWatch(4, clock)
    run_id = uuid4()
    one.hear(alive_event(run_id))
    one.hear(alive_event(run_id, event=QUIET_EVENT))
    clock.now += 60
    assert one.watch.silent() == []


def test_replayed_old_alive_events_start_no_watch() -> None:
    """Alive events older than the window (the stream's replay on subscribing) are not tracked."""
    one = listening_only()
    run_id = uuid4()
    one.hear(alive_event(run_id, age=30))
    assert run_id not in one.watch


def test_an_older_attempts_alive_event_does_not_revive_a_newer_one() -> None:
    """Attempt 2 is watched; a late event of attempt 1 does not reset its silence."""
    clock = Clock()
    watch = SilenceWatch(4, clock)
    run_id = uuid4()
    watch.alive(run_id, 2)
    clock.now += 5
    watch.alive(run_id, 1)
    assert watch.silent() == [(run_id, 2)]


def test_the_standby_window_must_span_two_alive_intervals() -> None:
    """A window shorter than two alive intervals is refused with a message."""
    with pytest.raises(ValueError, match="standby_silent_seconds must be at least twice liveness_seconds"):
        WarmWorkerSettings(_env_file=None, standby_silent_seconds=3, liveness_seconds=2)


def test_a_liveness_block_ends_with_a_quiet_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's alive events stop with a quiet event, after the last alive one, when its items are done."""
    from fanout.core import liveness

    sent: list[str] = []
    monkeypatch.setattr(liveness, "current_subject", lambda: liveness.Subject(uuid4(), uuid4(), 1))
    monkeypatch.setattr("prefect.events.emit_event", lambda event, **_: sent.append(event))
    with liveness.keeping_alive(0.01):
        anyio.run(anyio.sleep, 0.05)
    assert sent[-1] == QUIET_EVENT and set(sent[:-1]) == {ALIVE_EVENT}

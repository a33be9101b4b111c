"""`GET /api/instances/{id}?wait=`: a status request held until the run finishes, woken by its state events."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from fastapi import FastAPI
from prefect.events import Event

from fanout.api.deps import WebhookState
from fanout.api.state_changes import StateChanges, Subscribe
from tests.support.fake_runs import FakeRuns
from tests.support.webhook_client import AUTH, call, make_app, with_client

DONE = ["Processed item-1"]


def running_instance(runs: FakeRuns, **settings: Any) -> tuple[FastAPI, str, UUID]:
    """An app whose waits only end on an event or at `wait` (no periodic recheck), and one running instance."""
    app = make_app(runs, **settings)
    state: WebhookState = app.state.webhook
    state.changes = StateChanges(recheck_seconds=60)
    instance = call(app, "POST", "/api/start-fanout", json={"count": 1}).json()["id"]
    run = runs.set_state(instance, "RUNNING")
    return app, instance, run.flow_run_id


def waiting(app: FastAPI, instance: str, wait: float, meanwhile: Callable[[], Awaitable[None]]) -> httpx.Response:
    """GET the status with `wait`, running `meanwhile` while the request is held."""

    async def use(client: httpx.AsyncClient) -> httpx.Response:
        request = asyncio.create_task(client.get(f"/api/instances/{instance}?wait={wait}", headers=AUTH))
        await meanwhile()
        return await request

    return with_client(app, use)


def changes_of(app: FastAPI) -> StateChanges:
    state: WebhookState = app.state.webhook
    return state.changes


def test_a_held_status_answers_200_when_the_final_state_event_comes(runs: FakeRuns) -> None:
    """The run completes while the request waits: the event wakes it and it answers 200 with the output."""
    app, instance, run_id = running_instance(runs)

    async def complete() -> None:
        await asyncio.sleep(0.1)
        runs.set_state(instance, "COMPLETED", output=DONE)
        changes_of(app).ended(run_id)

    response = waiting(app, instance, 30, complete)
    assert response.status_code == 200
    assert response.json()["output"] == DONE


def test_a_final_event_ahead_of_the_visible_write_is_read_again_shortly(runs: FakeRuns) -> None:
    """The final-state event can come before the server's write shows: the run is read again until it does."""
    app, instance, run_id = running_instance(runs)

    async def event_then_write() -> None:
        await asyncio.sleep(0.1)
        changes_of(app).ended(run_id)
        await asyncio.sleep(0.2)
        runs.set_state(instance, "COMPLETED", output=DONE)

    assert waiting(app, instance, 30, event_then_write).status_code == 200


def test_with_no_change_the_wait_ends_with_202_and_the_poll_headers(runs: FakeRuns) -> None:
    """A run still running when `wait` runs out gets 202 and Retry-After, and a Location that waits again."""
    app, instance, _ = running_instance(runs)

    async def nothing() -> None:
        return None

    response = waiting(app, instance, 0.2, nothing)
    assert response.status_code == 202
    assert response.headers["location"].endswith(f"/api/instances/{instance}?wait=0.2")
    assert response.headers["retry-after"] == "1"
    assert response.json()["runtimeStatus"] == "Running"


def test_a_wait_longer_than_the_setting_is_cut_to_it(runs: FakeRuns) -> None:
    """`?wait=` beyond FANOUT_WEBHOOK_MAX_WAIT_SECONDS holds the request only that long."""
    app, instance, _ = running_instance(runs, webhook_max_wait_seconds=0.2)
    assert call(app, "GET", f"/api/instances/{instance}?wait=3600").status_code == 202


def test_a_state_change_that_is_not_final_wakes_no_request(runs: FakeRuns) -> None:
    """Only a final state's event wakes a held request: a run moving on to Running is read again only when
    the wait is over."""
    app, instance, run_id = running_instance(runs)
    runs.set_state(instance, "PENDING")
    events = [state_event(run_id, "RUNNING")]

    async def running() -> None:
        await asyncio.sleep(0.05)
        runs.set_state(instance, "RUNNING")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changes_of(app).listen(replaying(events)), 0.1)

    response = waiting(app, instance, 0.3, running)
    assert response.status_code == 202 and response.json()["runtimeStatus"] == "Running"
    assert runs.reads_again == 1


@pytest.mark.parametrize("wait", ["-1", "soon", "nan"])
def test_a_bad_wait_is_refused_with_a_message(runs: FakeRuns, wait: str) -> None:
    """A negative or non-numeric `wait` is a client error that says what is wrong."""
    app, instance, _ = running_instance(runs)
    response = call(app, "GET", f"/api/instances/{instance}?wait={wait}")
    assert 400 <= response.status_code < 500
    assert "wait" in response.text


def test_an_end_heard_during_the_read_is_not_missed() -> None:
    """A final-state event that came after the request began reading ends its wait at once."""
    changes = StateChanges(recheck_seconds=60)
    run_id = uuid4()
    since = changes.now()
    changes.ended(run_id)
    assert asyncio.run(changes.wait(run_id, since, 30)) is True


def state_event(run_id: UUID, state_type: str) -> Event:
    return Event(
        occurred=datetime.now(UTC),
        event=f"prefect.flow-run.{state_type.title()}",
        resource={"prefect.resource.id": f"prefect.flow-run.{run_id}"},
        payload={"validated_state": {"type": state_type, "name": state_type.title()}},
    )


def replaying(events: list[Event]) -> Subscribe:
    """A subscription that hands out `events`, then stays open."""

    @asynccontextmanager
    async def subscribe() -> AsyncIterator[AsyncIterator[Event]]:
        async def stream() -> AsyncIterator[Event]:
            for event in events:
                yield event
            await asyncio.Event().wait()

        yield stream()

    return subscribe


def test_listening_takes_note_of_final_states_only() -> None:
    """Of the subscription's events, a run reaching Completed is noted as ended, one reaching Running is not."""
    changes = StateChanges()
    running, completed = uuid4(), uuid4()
    events = [state_event(running, "RUNNING"), state_event(completed, "COMPLETED")]

    async def main() -> tuple[bool, bool]:
        since = changes.now()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changes.listen(replaying(events)), 0.05)
        return changes.ended_since(running, since), changes.ended_since(completed, since)

    assert asyncio.run(main()) == (False, True)


def test_a_run_deleted_while_a_request_waits_on_it_answers_404(runs: FakeRuns) -> None:
    """The held request reads its run again after its end is heard: a run gone meanwhile is a 404, not a 202."""
    app, instance, run_id = running_instance(runs)

    async def delete() -> None:
        await asyncio.sleep(0.1)
        del runs.runs[run_id]
        changes_of(app).ended(run_id)

    assert waiting(app, instance, 30, delete).status_code == 404

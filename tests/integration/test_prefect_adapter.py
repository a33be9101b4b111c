"""The adapter's assumptions that need a real Prefect server (the session's test harness): event-free
artifact requests, where the default result storage keeps a persisted result, a flow returning a
result it already wrote, and a flow run on a run created beforehand."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import prefect.flow_engine
import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.objects import StateType
from prefect.results import ResultStore, get_default_result_storage
from prefect.runtime import flow_run
from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH, temporary_settings
from prefect.states import Completed
from pydantic import BaseModel

from fanout.core import prefect_adapter
from fanout.core.prefect_adapter import persisted_result_file, written_completed


@flow
def a_run() -> str:
    """A flow run for the artifact to belong to."""
    return str(flow_run.get_id())


def test_the_server_keeps_a_progress_artifact_created_and_updated_by_the_adapter() -> None:
    """POST /artifacts/ then PATCH /artifacts/{id}: the server stores the run's artifact with the last values."""
    run_id = UUID(a_run())
    key = f"adapter-progress-{run_id.hex[:8]}"
    with get_client(sync_client=True) as client:
        artifact_id = prefect_adapter.create_progress_artifact(
            client, key=key, flow_run_id=run_id, percent=40.0, description="2 of 5 items done, 0 failed"
        )
        prefect_adapter.update_progress_artifact(client, artifact_id, percent=100.0, description="5 of 5 items done")
        [stored] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    assert (stored.id, stored.type, stored.flow_run_id) == (artifact_id, "progress", run_id)
    assert (stored.data, stored.description) == (100.0, "5 of 5 items done")


def test_a_states_persisted_result_is_a_file_of_local_result_storage(tmp_path: Path) -> None:
    """With no storage block, a persisted result's metadata names its file in the local storage folder."""
    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(tmp_path)}):
        store = ResultStore(result_storage=get_default_result_storage(_sync=True))  # type: ignore[call-arg]
        record = store.create_result_record(["Processed item-1"])
        store.persist_result_record(record)
        assert persisted_result_file(Completed(data=record.metadata)) == next(tmp_path.iterdir()).resolve()


@pytest.mark.anyio
async def test_a_flagged_sqlite_write_transaction_begins_immediate_once() -> None:
    """With the flag set, Prefect's SQLite transaction begins IMMEDIATE; the request's next one as Prefect says."""
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from prefect.server.database.configurations import SQLITE_BEGIN_MODE, AioSqliteConfiguration

    from fanout.core.prefect_adapter import IMMEDIATE_TRANSACTION, immediate_transactions

    class Session:
        @asynccontextmanager
        async def begin(self) -> AsyncIterator[str | None]:
            yield SQLITE_BEGIN_MODE.get()

    immediate_transactions()
    configuration = AioSqliteConfiguration(connection_url="sqlite+aiosqlite:///:memory:")
    IMMEDIATE_TRANSACTION.set(True)
    async with configuration.begin_transaction(Session()) as first:  # type: ignore[arg-type]
        pass
    async with configuration.begin_transaction(Session()) as second:  # type: ignore[arg-type]
        pass
    assert (first, second) == ("IMMEDIATE", "DEFERRED")


@pytest.mark.skipif(
    not hasattr(prefect.flow_engine, "observe_flow_run_suspension"),
    reason="this Prefect's engine opens no suspension observer",
)
def test_a_suspension_reaches_the_run_through_an_observer_opened_before_it() -> None:
    """An observer opened before the run exists, then watching it, marks the run's request when it is suspended."""
    import time

    import prefect.flow_engine
    from prefect._flow_run_suspension import FlowRunSuspensionRequest
    from prefect.states import Running, Suspended

    from fanout.core.prefect_adapter import OpenSuspensionObserver

    observer = OpenSuspensionObserver()
    assert observer.open(timeout=30)
    uninstall = observer.install()
    request = FlowRunSuspensionRequest()
    try:
        with get_client(sync_client=True) as client:
            run = client.create_flow_run(a_run, state=Running())
            with prefect.flow_engine.observe_flow_run_suspension(run.id, request):
                client.set_flow_run_state(run.id, Suspended(timeout_seconds=60), force=True)
                deadline = time.monotonic() + 30
                while not request.is_requested() and time.monotonic() < deadline:
                    time.sleep(0.05)
    finally:
        uninstall()
    assert request.is_requested()


class Walked(BaseModel):
    """A result element that counts how often Prefect's collection walk looks inside it."""

    value: int
    visits: list[int] = []

    def __iter__(self) -> Any:
        self.visits.append(1)
        return super().__iter__()


def returning(state_of: Any) -> Any:
    """A flow returning `state_of(output)`'s state, whose completion hook runs the hand-back it gives."""
    hand_backs: list[Any] = []

    def hand_back(flow: Any, flow_run: Any, state: Any) -> None:
        for action in hand_backs:
            action()

    @flow(persist_result=True, result_serializer="json", on_completion=[hand_back])
    def returns(count: int) -> Any:
        state, give = state_of([Walked(value=n) for n in range(count)])
        hand_backs.append(give)
        return state

    return returns


def test_a_flow_returning_a_written_result_hands_its_caller_the_output() -> None:
    """The caller gets the output from the state, and the API's state names the written result, which reads back the same."""
    returns = returning(written_completed)
    state = returns(3, return_state=True)
    assert [element.value for element in state.result()] == [0, 1, 2]
    with get_client(sync_client=True) as client:
        stored = client.read_flow_run(state.state_details.flow_run_id).state
    assert stored is not None
    assert [element.value for element in stored.result()] == [0, 1, 2]


@pytest.mark.parametrize(
    ("state_of", "walked"),
    [(written_completed, False), (lambda output: (Completed(data=output), lambda: None), True)],
    ids=["written", "plain"],
)
def test_prefect_walks_a_written_result_without_looking_inside_it(state_of: Any, walked: bool) -> None:
    """Prefect looks inside every element of a state's data it must write, and inside none of a written one."""
    seen: list[Walked] = []

    def kept(output: list[Walked]) -> Any:
        seen.extend(output)
        return state_of(output)

    returning(kept)(3)
    assert any(element.visits for element in seen) is walked


@flow
def doubles(number: int) -> dict[str, Any]:
    """A flow run that says which run it is and what it made of its parameter."""
    return {"run": str(flow_run.get_id()), "doubled": number * 2}


def test_a_run_created_with_its_name_and_tags_runs_the_flow_and_returns_its_result() -> None:
    """The flow's result comes back; the API's run has the name and the tags it was created with, and Completed."""
    name = f"created-{uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        result = prefect_adapter.run_created(doubles, {"number": 21}, client, name, ["fanout.test:created"])
        stored = client.read_flow_run(UUID(result["run"]))
    assert result["doubled"] == 42
    assert (stored.name, stored.tags, stored.state_type) == (name, ["fanout.test:created"], StateType.COMPLETED)


def test_a_created_run_s_events_relate_to_the_flow_the_api_answered_without_reading_it() -> None:
    """The flow the API answered as the run was created is in Prefect's cache of what the run's events relate to."""
    from prefect.events.related import RESOURCE_CACHE

    with get_client(sync_client=True) as client:
        result = prefect_adapter.run_created(doubles, {"number": 1}, client, None, [])
        stored = client.read_flow_run(UUID(result["run"]))
    entry, _ = RESOURCE_CACHE[f"flow.{stored.flow_id}"]
    assert (entry["kind"], entry["object"].id, entry["object"].name) == ("flow", stored.flow_id, "doubles")

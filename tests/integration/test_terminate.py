"""Terminate on a real Prefect server: the server decides on the run's state when the request lands, so a
copy of the run read a moment earlier never lets a terminated run go on, or leaves it stuck."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from prefect import flow, get_client
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import StateType
from prefect.states import AwaitingRetry, Cancelled, Pending, Running, Scheduled, State

from fanout.service.runs import PrefectRuns, RunRecord, record


@flow(name="terminate-probe")
def probe() -> None:
    """A flow the tests' runs belong to; it never runs."""


Scenario = Callable[[PrefectClient, PrefectRuns, UUID], Awaitable[Any]]


def on_server(scenario: Scenario) -> Any:
    """Run `scenario` on a new Scheduled run of `probe`, with the webhook's `PrefectRuns`."""

    async def main() -> Any:
        async with get_client() as client:
            run = await client.create_flow_run(probe, state=Scheduled())
            return await scenario(client, PrefectRuns(client, "terminate-probe/default", None), run.id)

    return asyncio.run(main())


async def read(client: PrefectClient, flow_run_id: UUID) -> RunRecord:
    return record(await client.read_flow_run(flow_run_id))


async def state_type(client: PrefectClient, flow_run_id: UUID) -> StateType:
    state = (await client.read_flow_run(flow_run_id)).state
    assert state is not None
    return state.type


async def propose(client: PrefectClient, flow_run_id: UUID, state: State[Any]) -> StateType:
    """What the run's state is after a worker or flow process proposes `state` (without forcing)."""
    await client.set_flow_run_state(flow_run_id, state)
    return await state_type(client, flow_run_id)


def test_a_run_no_worker_took_is_cancelled_at_once() -> None:
    """A Scheduled run ends Cancelled at once."""

    async def scenario(client: PrefectClient, runs: PrefectRuns, flow_run_id: UUID) -> StateType:
        await runs.terminate(await read(client, flow_run_id))
        return await state_type(client, flow_run_id)

    assert on_server(scenario) is StateType.CANCELLED


def test_a_run_taken_after_it_was_read_never_runs() -> None:
    """Read Scheduled, then taken by a worker before the terminate lands: Cancelling, and its process's
    Running is refused."""

    async def scenario(client: PrefectClient, runs: PrefectRuns, flow_run_id: UUID) -> tuple[StateType, StateType]:
        seen = await read(client, flow_run_id)
        await client.set_flow_run_state(flow_run_id, Pending())  # the worker takes it
        await runs.terminate(seen)
        return await state_type(client, flow_run_id), await propose(client, flow_run_id, Running())

    assert on_server(scenario) == (StateType.CANCELLING, StateType.CANCELLING)


def test_a_run_waiting_for_its_next_attempt_is_cancelled_at_once() -> None:
    """A run back to AwaitingRetry, with the process id of its last attempt, ends Cancelled at once."""

    async def scenario(client: PrefectClient, runs: PrefectRuns, flow_run_id: UUID) -> tuple[StateType, StateType]:
        await client.set_flow_run_state(flow_run_id, Pending())
        await client.update_flow_run(flow_run_id, infrastructure_pid="host:4242")
        await client.set_flow_run_state(flow_run_id, Running())
        await client.set_flow_run_state(flow_run_id, AwaitingRetry(), force=True)
        await runs.terminate(await read(client, flow_run_id))
        return await state_type(client, flow_run_id), await propose(client, flow_run_id, Pending())

    assert on_server(scenario) == (StateType.CANCELLED, StateType.CANCELLED)


def test_a_running_run_goes_cancelling_for_its_worker_to_stop() -> None:
    """A Running run goes Cancelling: its worker stops the process and marks it Cancelled."""

    async def scenario(client: PrefectClient, runs: PrefectRuns, flow_run_id: UUID) -> StateType:
        await client.set_flow_run_state(flow_run_id, Pending())
        await client.set_flow_run_state(flow_run_id, Running())
        await runs.terminate(await read(client, flow_run_id))
        return await state_type(client, flow_run_id)

    assert on_server(scenario) is StateType.CANCELLING


def test_a_second_terminate_with_an_older_copy_leaves_the_run_cancelled() -> None:
    """Two terminates of one Running run, the second landing after the worker marked it Cancelled: it
    stays Cancelled, not Cancelling with no process left to end it."""

    async def scenario(client: PrefectClient, runs: PrefectRuns, flow_run_id: UUID) -> StateType:
        await client.set_flow_run_state(flow_run_id, Pending())
        await client.set_flow_run_state(flow_run_id, Running())
        seen = await read(client, flow_run_id)
        await runs.terminate(seen)
        await client.set_flow_run_state(flow_run_id, Cancelled())  # the worker stopped the process
        await runs.terminate(seen)
        return await state_type(client, flow_run_id)

    assert on_server(scenario) is StateType.CANCELLED


def test_terminates_at_once_end_in_one_cancel() -> None:
    """Three terminates sent together to a Running run: Cancelling, once the worker ends it Cancelled."""

    async def scenario(client: PrefectClient, runs: PrefectRuns, flow_run_id: UUID) -> tuple[StateType, StateType]:
        await client.set_flow_run_state(flow_run_id, Pending())
        await client.set_flow_run_state(flow_run_id, Running())
        seen = await read(client, flow_run_id)
        await asyncio.gather(*(runs.terminate(seen) for _ in range(3)))
        during = await state_type(client, flow_run_id)
        await client.set_flow_run_state(flow_run_id, Cancelled())
        await runs.terminate(seen)
        return during, await state_type(client, flow_run_id)

    assert on_server(scenario) == (StateType.CANCELLING, StateType.CANCELLED)

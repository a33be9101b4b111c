"""The status API's output of a Completed run comes from fanout's own output record, not Prefect's result."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, get_client
from prefect.states import Completed

from fanout import durable_map
from fanout.inputs.request import FanoutRequest
from fanout.seed import fan_out_fan_in
from fanout.service.runs import LABEL_FLOW, PrefectRuns, record
from fanout.service.status import RuntimeStatus, status_document


async def status_of(flow_run_id: Any, without_prefect_result: bool = True) -> Any:
    """The status document of the run, as the webhook builds it; the run's state carries no result
    data at all when `without_prefect_result` (as if Prefect's persisted result were gone)."""
    async with get_client() as client:
        run = record(await client.read_flow_run(flow_run_id))
        if without_prefect_result:
            run = run.__class__(**{**run.__dict__, "state": Completed(data=None)})
        return await status_document(PrefectRuns(client, "fan-out-fan-in/default", None), run, "fan-out-fan-in")


def test_a_completed_run_shows_its_output_without_prefects_result() -> None:
    """A Completed run whose Prefect result cannot be read still shows its ordered output."""
    state = fan_out_fan_in(FanoutRequest(count=3, instance_id="output-record"), return_state=True)
    document = asyncio.run(status_of(state.state_details.flow_run_id))
    assert document.runtime_status is RuntimeStatus.COMPLETED
    assert document.output == ["Processed item-1", "Processed item-2", "Processed item-3"]


def test_tolerated_failures_are_null_in_the_recorded_output(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path
) -> None:
    """A run that Completed within its tolerated failures shows null in each failed item's slot."""
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-2")
    request = FanoutRequest(count=3, instance_id="output-nulls", tolerated_failure_count=1)
    state = fan_out_fan_in(request, return_state=True)
    document = asyncio.run(status_of(state.state_details.flow_run_id))
    assert document.output == ["Processed item-1", None, "Processed item-3"]


def test_a_rerun_of_the_instance_records_its_own_output(clean_settings: Path) -> None:
    """After a damaged output record, running the instance again writes a sound one (from checkpoints)."""
    request = FanoutRequest(count=2, instance_id="output-again")
    fan_out_fan_in(request)
    record_path = clean_settings / "fanout" / "output-again" / "run-output"
    record_path.write_bytes(record_path.read_bytes().replace(b"item-1", b"item-X"))
    state = fan_out_fan_in(request, return_state=True)
    assert asyncio.run(status_of(state.state_details.flow_run_id)).output == ["Processed item-1", "Processed item-2"]


def double(number: int) -> int:
    if number == 0:
        raise ValueError("no zeros")
    return 2 * number


@flow(name="sum-of-doubles", persist_result=True, result_serializer="json")
def sum_of_doubles(numbers: list[int]) -> int:
    return sum(result for result in durable_map(double, numbers, tolerated_failure_count=1) if result is not None)


async def another_flows_status(flow_run_id: Any, labels: dict[str, Any]) -> Any:
    """The status document of a run of `sum-of-doubles` as the webhook reads it when it started the run (its
    flow label), with `labels` as the progress its flow had published by then."""
    async with get_client() as client:
        run = record(await client.read_flow_run(flow_run_id))
        run = dataclasses.replace(run, labels={**run.labels, **labels, LABEL_FLOW: "sum-of-doubles"})
        return await status_document(PrefectRuns(client, "fan-out-fan-in/default", None), run, "fan-out-fan-in")


def test_another_flows_completed_status_counts_its_recorded_items_before_its_last_labels_land() -> None:
    """A Completed run of a durable_map flow counts its items as its stage recorded them, though its labels said 0."""
    state = sum_of_doubles([1, 2, 3, 4, 5, 0], return_state=True)
    lagging = {"fanout.total": 6, "fanout.completed": 0, "fanout.failed": 0}
    document = asyncio.run(another_flows_status(state.state_details.flow_run_id, lagging))
    assert (document.runtime_status, document.output) == (RuntimeStatus.COMPLETED, 30)
    custom = document.custom_status
    assert (custom.total, custom.completed, custom.failed) == (6, 5, 1)

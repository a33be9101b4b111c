"""The status API's output of a Completed run comes from fanout's own output record, not Prefect's result."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from prefect import get_client
from prefect.states import Completed

from fanout.inputs.request import FanoutRequest
from fanout.seed import fan_out_fan_in
from fanout.service.runs import PrefectRuns, record
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

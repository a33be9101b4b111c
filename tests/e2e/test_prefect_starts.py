"""Starting the deployed flow the Prefect way: `prefect deployment run` and an event on the events API."""

from __future__ import annotations

import asyncio
import re
import subprocess
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from prefect.client.orchestration import PrefectClient

from fanout.localstack.stack import LocalStack, _bin
from tests.conftest import REPO_ROOT
from tests.support.stacks import FINAL_STATES, wait_for

pytestmark = pytest.mark.e2e

RUN_ID = re.compile(r"UUID:\s*([0-9a-f-]{36})")


def finished_output(stack: LocalStack, flow_run_id: str, timeout: float = 180) -> tuple[str, Any]:
    """Wait for the flow run to finish; its final state type and its persisted return value."""

    async def read() -> tuple[str, Any]:
        async with PrefectClient(stack.api_url) as client:
            flow_run = await client.read_flow_run(uuid.UUID(flow_run_id))
            assert flow_run.state is not None
            return flow_run.state.type.value, await flow_run.state.aresult(raise_on_failure=False)

    def state() -> str | None:
        run = httpx.get(f"{stack.api_url}/flow_runs/{flow_run_id}", headers=stack.api_headers(), timeout=30).json()
        return run["state"]["type"] if run["state"]["type"] in FINAL_STATES else None

    wait_for(state, timeout=timeout, what=f"flow run {flow_run_id} to finish")
    return asyncio.run(read())


def test_prefect_deployment_run_with_the_request_parameter(stack: LocalStack, worker: Any) -> None:
    """`prefect deployment run 'fan-out-fan-in/default' --param request='{"count": 3}'` runs three items."""
    done = subprocess.run(
        [_bin("prefect"), "deployment", "run", "fan-out-fan-in/default", "--param", 'request={"count": 3}'],
        cwd=REPO_ROOT,
        env=stack.client_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    match = RUN_ID.search(done.stdout)
    assert match, done.stdout
    state, output = finished_output(stack, match.group(1))
    assert state == "COMPLETED" and output == [f"Processed item-{i}" for i in range(1, 4)]


def test_an_event_on_the_events_api_starts_a_run_through_the_deployment_trigger(
    stack: LocalStack, worker: Any, prefect_api: httpx.Client
) -> None:
    """An event `fanout.start` whose payload is the request starts the deployment with those parameters."""
    instance = f"event-{uuid.uuid4().hex[:8]}"
    event = {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": "fanout.start",
        "resource": {"prefect.resource.id": "fanout.starter"},
        "payload": {"items": ["a", "b"], "instance_id": instance},
    }

    assert prefect_api.post("/events", json=[event]).status_code == 204

    def started_run() -> str | None:
        runs = prefect_api.post("/flow_runs/filter", json={"limit": 200}).json()
        matching = [run for run in runs if (run["parameters"].get("request") or {}).get("instance_id") == instance]
        return matching[0]["id"] if matching else None

    flow_run_id = wait_for(started_run, timeout=120, interval=2, what="a run started by the event")
    state, output = finished_output(stack, flow_run_id)
    assert state == "COMPLETED" and output == ["Processed a", "Processed b"]

"""Starting the deployed flow the Prefect way: `prefect deployment run` and an event on the events API."""

from __future__ import annotations

import re
import subprocess
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from fanout.localstack.stack import LocalStack, _bin
from tests.conftest import REPO_ROOT
from tests.support.stacks import finished_output, wait_for

pytestmark = pytest.mark.e2e

RUN_ID = re.compile(r"UUID:\s*([0-9a-f-]{36})")


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

    flow_run_id = wait_for(started_run, timeout=120, interval=0.5, what="a run started by the event")
    state, output = finished_output(stack, flow_run_id)
    assert state == "COMPLETED" and output == ["Processed a", "Processed b"]

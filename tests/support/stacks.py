"""Helpers for tests on a stack of real processes (tests/e2e, tests/faults): the stack's environment,
cleaning up after a test, polling a status URL, waiting for a condition."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
from prefect.client.orchestration import PrefectClient

from fanout.localstack import polling
from fanout.localstack.stack import LocalStack
from tests.support.paths import REPO_ROOT

STACK_TOKEN = "e2e-test-token-0123456789abcdef"
"""The webhook token of the tests' stack."""
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
CRASH_SETTINGS = {"FANOUT_HEARTBEAT_SECONDS": "30", "FANOUT_CRASH_AFTER_SECONDS": "60", "FANOUT_MAX_AUTO_RETRIES": "1"}
"""The stack's crash detection: alive events every 2 s, resumed after 12 s of silence (the defaults);
heartbeats every 30 s (Prefect's minimum), crashed after 60 s without one; one automatic retry (the fault
tests check that cap)."""
SLOW_SCRIPTED = {
    "FANOUT_TEST_SLEEP": "0.5",
    "FANOUT_MAX_PARALLEL": "1",
    "FANOUT_TEST_FLAKY": "rw-2",
    "FANOUT_RETRIES": "0",
}
"""Settings of the scripted processor (with `execution_log`) that the e2e tests acting on a running run share,
so one pooled worker serves them all: slow items one at a time (a run is still running when the test acts
on it), and item `rw-2` failing its first attempt, unretried (the rewind test's)."""


def stack_environment(home: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The stack's processes' environment: this one without FANOUT_* overrides, the checkout on the path
    (flow runs import the test processors), one result storage for workers and webhook, the folder item
    sources may be read from, and the crash settings."""
    env = {name: value for name, value in environ.items() if not name.startswith("FANOUT_")}
    return {
        **env,
        "PYTHONPATH": str(REPO_ROOT),
        "FANOUT_RESULT_STORAGE": str(home / "results"),  # the webhook reads outputs and results pages there
        "FANOUT_SOURCE_ROOTS": str(home / "sources"),  # where tests put the item files a start names
        **CRASH_SETTINGS,
    }


def fanout_env() -> dict[str, str]:
    """This test's FANOUT_* variables (set by tests/conftest.py and the test itself)."""
    return {name: value for name, value in os.environ.items() if name.startswith("FANOUT_")}


def delete_unfinished_runs(stack: LocalStack) -> None:
    """Remove runs a test left behind, so the next test's worker does not pick them up."""
    with httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=30) as client:
        runs = client.post("/flow_runs/filter", json={"limit": 200}).json()
        for run in runs:
            if (run.get("state") or {}).get("type") not in FINAL_STATES:
                client.delete(f"/flow_runs/{run['id']}")


def poll_until_finished(client: httpx.Client, status_url: str, timeout: float = 180) -> httpx.Response:
    """GET the status URL, following `Location` and waiting `Retry-After`, until it answers 200."""
    deadline = time.monotonic() + timeout
    url = status_url
    while True:
        response = client.get(url)
        if response.status_code != 202:
            return response
        if time.monotonic() > deadline:
            raise TimeoutError(f"{status_url} still {response.json().get('runtimeStatus')} after {timeout}s")
        url = response.headers["location"]
        time.sleep(float(response.headers["retry-after"]))


def wait_for(condition: Callable[[], Any], timeout: float = 120, interval: float = 0.5, what: str = "") -> Any:
    """Poll `condition` until it returns something truthy (fanout.localstack.polling, with the stack tests'
    defaults)."""
    return polling.wait_for(condition, timeout, what or str(condition), interval=interval)


def finished_output(stack: LocalStack, flow_run_id: str, timeout: float = 180) -> tuple[str, Any]:
    """Wait for the flow run to finish; its final state type and its persisted return value."""

    async def read() -> tuple[str, Any]:
        async with PrefectClient(stack.api_url) as client:
            flow_run = await client.read_flow_run(uuid.UUID(flow_run_id))
            assert flow_run.state is not None
            return flow_run.state.type.value, await flow_run.state.aresult(raise_on_failure=False)

    with httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=30) as api:

        def state() -> str | None:
            run = api.get(f"/flow_runs/{flow_run_id}").json()
            return run["state"]["type"] if run["state"]["type"] in FINAL_STATES else None

        wait_for(state, timeout=timeout, what=f"flow run {flow_run_id} to finish")
    return asyncio.run(read())

"""A Prefect global concurrency limit caps items in flight across two workers, and a change binds mid-run."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fanout.localstack.stack import DEPLOYMENT, LocalStack, _bin
from tests.conftest import REPO_ROOT
from tests.support.processors import in_flight_timeline
from tests.support.stacks import FINAL_STATES, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.multiworker]

LIMIT = "fanout-items"
ITEMS_PER_RUN = 30
SLOT_HOLD_SECONDS = 0.5
ITEM_SECONDS = 0.2


def gcl(stack: LocalStack, *args: str) -> None:
    """`prefect gcl ...` against the stack's server, as an operator would type it."""
    done = subprocess.run(
        [_bin("prefect"), "gcl", *args],
        cwd=REPO_ROOT,
        env=stack.client_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture
def item_limit(prefect_api: httpx.Client) -> Iterator[str]:
    """A global concurrency limit of 3 slots for items, deleted after the test (through the REST API: the
    operator's `prefect gcl` is what the test runs mid-run)."""
    created = prefect_api.post("/v2/concurrency_limits/", json={"name": LIMIT, "limit": 3})
    assert created.status_code == 201, created.text
    yield LIMIT
    prefect_api.delete(f"/v2/concurrency_limits/{LIMIT}").raise_for_status()


@pytest.fixture
def timeline(tmp_path: Path) -> Path:
    return tmp_path / "in-flight.log"


@pytest.fixture
def two_workers(start_worker: Callable[..., Any], item_limit: str, timeline: Path) -> None:
    """Two workers on the pool, each allowed 4 items at once, all sharing the global limit."""
    env = {
        "FANOUT_PROCESSOR": "tests.support.processors:fleet_recorded",
        "FANOUT_TEST_RECORDER": str(timeline),
        "FANOUT_TEST_SLEEP": str(ITEM_SECONDS),
        "FANOUT_CONCURRENCY_LIMIT": item_limit,
        "FANOUT_SLOT_HOLD_SECONDS": str(SLOT_HOLD_SECONDS),
        "FANOUT_MAX_PARALLEL": "4",
        "FANOUT_BATCH_SIZE": "5",
    }
    start_worker(**env)
    start_worker(**env)


def start_runs(api: httpx.Client, count: int) -> list[str]:
    flow_name, name = DEPLOYMENT.split("/")
    deployment = api.get(f"/deployments/name/{flow_name}/{name}").json()
    ids = []
    for _ in range(count):
        request = {"count": ITEMS_PER_RUN, "instance_id": f"gcl-{uuid.uuid4().hex[:8]}"}
        created = create_run(api, deployment["id"], request)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    return ids


def create_run(api: httpx.Client, deployment_id: str, request: dict[str, Any]) -> httpx.Response:
    """Create a flow run, retrying the 503 a freshly started SQLite server answers while it is busy."""
    for delay in (1, 2, 4, 8, 0):
        created = api.post(f"/deployments/{deployment_id}/create_flow_run", json={"parameters": {"request": request}})
        if created.status_code != 503 or not delay:
            return created
        time.sleep(delay)
    return created


def all_finished(api: httpx.Client, ids: list[str]) -> list[str] | None:
    states = [api.get(f"/flow_runs/{run_id}").json()["state"]["type"] for run_id in ids]
    return states if all(state in FINAL_STATES for state in states) else None


def test_the_limit_caps_items_across_workers_and_a_lower_limit_binds_mid_run(
    stack: LocalStack, two_workers: None, prefect_api: httpx.Client, timeline: Path
) -> None:
    """Three runs on two workers never exceed 3 items in flight; after `gcl update --limit 1`, never 1."""
    ids = start_runs(prefect_api, 3)
    wait_for(
        lambda: max((n for _, n in in_flight_timeline(timeline)), default=0) >= 2,
        timeout=180,
        interval=0.2,
        what="items running on the workers",
    )
    gcl(stack, "update", LIMIT, "--limit", "1")
    changed_at = time.time()
    settled_at = changed_at + SLOT_HOLD_SECONDS + ITEM_SECONDS + 1.0
    wait_for(lambda: time.time() > settled_at + 3 * ITEM_SECONDS * 3, timeout=60, interval=0.2)
    raised = prefect_api.patch(f"/v2/concurrency_limits/{LIMIT}", json={"limit": 3})  # so the runs finish sooner
    assert raised.status_code == 204, raised.text
    states = wait_for(lambda: all_finished(prefect_api, ids), timeout=300, interval=0.25, what="the runs to finish")

    points = in_flight_timeline(timeline)
    assert states == ["COMPLETED"] * 3
    assert 2 <= max(n for _, n in points) <= 3
    assert max(in_flight_during(points, settled_at, settled_at + 3 * ITEM_SECONDS * 3)) <= 1


def in_flight_during(points: list[tuple[float, int]], start: float, end: float) -> list[int]:
    """Items in flight over [start, end]: the count standing at `start`, then every change inside."""
    before = [n for at, n in points if at < start]
    return ([before[-1]] if before else [0]) + [n for at, n in points if start <= at <= end]

"""End-to-end fixtures: a real Prefect server, fanout's deployments (src/fanout/localstack/deploy.py), real workers, the real webhook.

- `e2e_database_url` (session): None for SQLite; FANOUT_E2E_DATABASE=postgres runs the same stack
  on a private PostgreSQL cluster (or FANOUT_E2E_DATABASE_URL names a database).
- `stack` (session): server + deployments + webhook under uvicorn, no worker.
- `start_worker` (function): starts workers with this test's FANOUT_* environment (the stack's
  result storage, its test processor); stops them, and deletes unfinished runs, at teardown.
- `worker`: one such worker, for tests that need nothing special.
- `webhook`: an httpx client for the webhook with the bearer token.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fanout.localstack.postgres import private_postgres
from fanout.localstack.processes import Child
from fanout.localstack.stack import LocalStack
from tests.conftest import REPO_ROOT

E2E_TOKEN = "e2e-test-token-0123456789abcdef"
FINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


@pytest.fixture(scope="session")
def e2e_database_url() -> Iterator[str | None]:
    """The Prefect server's database: SQLite in the stack's home, unless FANOUT_E2E_DATABASE_URL names one
    or FANOUT_E2E_DATABASE=postgres asks for a private PostgreSQL cluster (started here, stopped after)."""
    if os.environ.get("FANOUT_E2E_DATABASE") == "postgres":
        with private_postgres() as cluster:
            yield cluster.database_url()
        return
    yield os.environ.get("FANOUT_E2E_DATABASE_URL") or None


@pytest.fixture(scope="session")
def e2e_auth_string() -> str | None:
    """Prefect API basic auth (`user:password`) for the stack's server; None leaves the API open."""
    return None


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, e2e_database_url: str | None, e2e_auth_string: str | None
) -> Iterator[LocalStack]:
    """A Prefect server with the fanout deployment and the webhook; always stopped at the end."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FANOUT_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    home = tmp_path_factory.mktemp("stack")
    env["FANOUT_RESULT_STORAGE"] = str(home / "results")  # the webhook reads outputs and results pages there
    env["FANOUT_SOURCE_ROOTS"] = str(home / "sources")  # where tests put the item files a start names
    local = LocalStack(
        home=home,
        database_url=e2e_database_url,
        auth_string=e2e_auth_string,
        env=env,
        token=E2E_TOKEN,
    )
    try:
        local.start_server()
        local.deploy()
        local.start_webhook()
        yield local
    finally:
        local.stop()


@pytest.fixture(autouse=True)
def shared_result_storage(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test on the session's stack keeps its results where the stack's webhook reads them (outputs,
    results pages), not in its own folder: workers and webhook share result storage, as in `fanout up`."""
    if "stack" in request.fixturenames:
        stack: LocalStack = request.getfixturevalue("stack")
        monkeypatch.setenv("FANOUT_RESULT_STORAGE", stack.env["FANOUT_RESULT_STORAGE"])


def fanout_env() -> dict[str, str]:
    """This test's FANOUT_* variables (set by tests/conftest.py and the test itself)."""
    return {name: value for name, value in os.environ.items() if name.startswith("FANOUT_")}


@pytest.fixture
def start_worker(stack: LocalStack) -> Iterator[Callable[..., Child]]:
    """Start workers that run flows with this test's FANOUT_* environment (plus `extra`)."""
    started: list[Child] = []

    def start(**extra: str) -> Child:
        child = stack.start_worker(env={**fanout_env(), **extra})
        started.append(child)
        return child

    yield start
    for child in started:
        stack.stop_worker(child)
    delete_unfinished_runs(stack)


@pytest.fixture
def worker(start_worker: Callable[..., Child]) -> Child:
    """One worker with this test's environment."""
    return start_worker()


@pytest.fixture
def webhook(stack: LocalStack) -> Iterator[httpx.Client]:
    """An HTTP client for the stack's webhook, sending the bearer token; unfinished runs are deleted after."""
    headers = {"Authorization": f"Bearer {stack.token}"}
    with httpx.Client(base_url=stack.webhook_url, headers=headers, timeout=30) as client:
        yield client
    delete_unfinished_runs(stack)


@pytest.fixture
def prefect_api(stack: LocalStack) -> Iterator[httpx.Client]:
    """An HTTP client for the stack's Prefect REST API."""
    with httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=30) as client:
        yield client


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
    """Poll `condition` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"gave up waiting for {what or condition}")


def executed_items(folder: Path) -> list[str]:
    """Items the scripted processor started, one entry per execution."""
    return sorted(path.name.split(".")[0] for path in folder.iterdir() if path.name != "crashed")

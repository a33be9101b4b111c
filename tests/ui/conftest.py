"""Browser tests: the test process's Prefect server with a finished fanout run, and headless Debian chromium."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from fanout.localstack.polling import wait_for
from fanout.localstack.processes import PrefectServer
from tests.support.paths import CHROMIUM, REPO_ROOT

if TYPE_CHECKING:
    from fanout.localstack.stack import LocalStack

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def prefect_server(local_stack: LocalStack) -> PrefectServer:
    """The test process's Prefect server (`local_stack`, tests/conftest.py), UI included: the page of one run
    needs no server of its own."""
    assert local_stack.server is not None
    return local_stack.server


def wait_for_task_runs(
    server: PrefectServer, flow_run_id: str, count: int, timeout: float = 90.0
) -> list[dict[str, Any]]:
    """The run's task runs once `count` of them are Completed (the server records them from events, with a lag)."""
    body = {"flow_runs": {"id": {"any_": [flow_run_id]}}}

    def completed() -> list[dict[str, Any]] | None:
        runs = httpx.post(f"{server.api_url}/task_runs/filter", json=body, timeout=10).json()
        return list(runs) if sum(run["state_type"] == "COMPLETED" for run in runs) >= count else None

    return wait_for(completed, timeout, f"{count} completed task runs of flow run {flow_run_id}", interval=0.25)


@pytest.fixture(scope="module")
def finished_run(prefect_server: PrefectServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The seed scenario run through the CLI against the server: item-3 retried, processor logging per item,
    each item taking a second."""
    began = datetime.now(UTC).isoformat()
    work = tmp_path_factory.mktemp("ui-run")
    (work / "executions").mkdir()
    env = {
        **prefect_server.client_env(),
        "PYTHONPATH": str(REPO_ROOT),
        "FANOUT_PROCESSOR": "tests.support.processors:chatty",
        "FANOUT_TEST_FLAKY": "item-3",
        "FANOUT_TEST_LOG_DIR": str(work / "executions"),
        "FANOUT_RESULT_STORAGE": str(work / "results"),
        "FANOUT_RETRY_DELAY_SECONDS": "0",
        "FANOUT_TEST_SLEEP": "1",  # long enough for progress: a run under half a second publishes none
    }
    done = subprocess.run(
        [sys.executable, "-m", "fanout.cli.cli", "run", "--instance-id", "ui-seed"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # the one run outside a deployment created since (the server's other runs are the e2e and fault tiers')
    since = {"flow_runs": {"start_time": {"after_": began}, "deployment_id": {"is_null_": True}}}
    [run] = httpx.post(f"{prefect_server.api_url}/flow_runs/filter", json=since, timeout=10).json()
    wait_for_task_runs(prefect_server, run["id"], count=5)
    return dict(run)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright; never a downloaded browser."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()

"""Flow tests run against one Prefect test server for the whole session."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from fanout.core.prefect_adapter import heartbeats_off
from fanout.engine import progress
from tests.support.cli import invoke_cli, run_cli
from tests.support.database import seeded_harness_folders

HARNESS_START_SECONDS = 600
"""How long the harness's server may take to start: minutes on a machine whose cores are busy with the
other tiers and CI's other jobs."""


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[str]:
    """A temporary Prefect server (SQLite in a temp folder, from the session's migrated template) shared by
    every flow test. Flows called here run without heartbeats, as `fanout run` runs them (`run_here`): only
    deployment runs, which a worker can restart, send any, and Prefect's heartbeat thread holds every flow up
    to a second on exit."""
    with ExitStack() as session:
        with seeded_harness_folders():  # only while the harness starts its server: other tiers start their own
            session.enter_context(prefect_test_harness(server_startup_timeout=HARNESS_START_SECONDS))
        session.enter_context(heartbeats_off())
        yield str(PREFECT_API_URL.value())
        await_progress_publishers()


def await_progress_publishers(timeout: float = 10.0) -> None:
    """Let the last runs' final progress publishes land before the server stops (the run does not wait)."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name == progress.THREAD_NAME:
            thread.join(max(0.0, deadline - time.monotonic()))


@pytest.fixture
def cli(prefect_api: str):  # type: ignore[no-untyped-def]
    """Run the `fanout` CLI in a subprocess against the session's server."""

    def call(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, api_url=prefect_api, timeout=timeout)

    return call


@pytest.fixture
def cli_here(prefect_api: str):  # type: ignore[no-untyped-def]
    """Run the `fanout` CLI in this process against the session's server: for what the command decides and
    prints (arguments, exit codes, output), where a process of its own would only add an interpreter and
    Prefect's import to each call."""

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return invoke_cli(*args, api_url=prefect_api)

    return call

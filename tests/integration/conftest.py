"""Flow tests run against one Prefect test server for the whole session."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from prefect.testing.utilities import prefect_test_harness

from fanout.engine import progress
from tests.conftest import REPO_ROOT


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[str]:
    """A temporary Prefect server (SQLite in a temp folder) shared by every flow test."""
    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())
        await_progress_publishers()


def await_progress_publishers(timeout: float = 10.0) -> None:
    """Let the last runs' final progress publishes land before the server stops (the run does not wait)."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name == progress.THREAD_NAME:
            thread.join(max(0.0, deadline - time.monotonic()))


def run_cli(*args: str, api_url: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`fanout <args>` in a subprocess that talks to the test server, with this test's FANOUT_* env."""
    env = {**os.environ, "PREFECT_API_URL": api_url, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "fanout.cli.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


@pytest.fixture
def cli(prefect_api: str):  # type: ignore[no-untyped-def]
    """Run the `fanout` CLI in a subprocess against the session's server."""

    def call(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, api_url=prefect_api, timeout=timeout)

    return call


def executed(folder: Path) -> list[str]:
    """The items the scripted processor started, one entry per execution."""
    return sorted(path.name.split(".")[0] for path in folder.iterdir() if path.name not in {"crashed", "killed"})

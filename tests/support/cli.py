"""Running the `fanout` CLI against a given Prefect server: in a process of its own, as a user does, or in
this process (typer's CliRunner) where the process boundary is not what a test is about."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.paths import REPO_ROOT


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


def invoke_cli(*args: str, api_url: str) -> subprocess.CompletedProcess[str]:
    """`fanout <args>` in this process, with this test's FANOUT_* env: its exit code, stdout and stderr (what
    the command itself writes; Prefect's log lines go to the handlers this process configured)."""
    from typer.testing import CliRunner

    from fanout.cli.cli import app

    result = CliRunner().invoke(app, list(args), env={"PREFECT_API_URL": api_url}, catch_exceptions=False)
    return subprocess.CompletedProcess(["fanout", *args], result.exit_code, result.stdout, result.stderr)

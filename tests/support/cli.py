"""Running the `fanout` CLI as a user does: in a process of its own, against a given Prefect server."""

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

"""`fanout up --database postgres --auth`: the local stack on PostgreSQL with a non-anonymous Prefect API."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fanout.localstack.postgres import LocalPostgres
from fanout.localstack.processes import Child
from tests.support.fanout_up import printed

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

FANOUT = str(Path(sys.executable).with_name("fanout"))


def test_up_says_it_runs_on_postgres_with_auth(production_up: tuple[Child, Path]) -> None:
    """The banner names the PostgreSQL database and where the auth string is."""
    child, home = production_up
    assert printed(child, "Database").endswith("/prefect")
    assert printed(child, "Prefect auth") == "cat"
    assert (home / "prefect-auth").stat().st_mode & 0o077 == 0


def test_the_prefect_api_refuses_anonymous_calls(production_up: tuple[Child, Path]) -> None:
    """Without the auth string the API answers 401, with it 200."""
    child, home = production_up
    api = printed(child, "Prefect API")
    assert httpx.post(f"{api}/flow_runs/filter", json={}, timeout=10).status_code == 401
    auth = httpx.BasicAuth(*(home / "prefect-auth").read_text().strip().split(":", 1))
    assert httpx.post(f"{api}/flow_runs/filter", json={}, auth=auth, timeout=10).status_code == 200


def test_start_wait_runs_the_seed_through_the_stack(production_up: tuple[Child, Path]) -> None:
    """`fanout start --wait` goes webhook -> Prefect (auth) -> worker -> flow on PostgreSQL and prints the seed."""
    _, home = production_up
    done = subprocess.run(
        [FANOUT, "start", "--home", str(home), "--wait", "--timeout", "240"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=home.parent,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == [f"Processed item-{i}" for i in range(1, 6)]


def test_sigterm_stops_the_stack_and_its_postgres(production_up: tuple[Child, Path]) -> None:
    """SIGTERM ends `fanout up`, and the PostgreSQL cluster it started is stopped too."""
    child, home = production_up
    os.killpg(child.process.pid, signal.SIGTERM)
    assert child.process.wait(timeout=120) == 0
    assert LocalPostgres(folder=home / "postgres").running_port() is None

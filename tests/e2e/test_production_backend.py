"""The production backend: a Prefect server on PostgreSQL that refuses anonymous API calls."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployments.postgres import LocalPostgres, running_postgres
from deployments.processes import PrefectServer, running_prefect_server
from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

SEED_OUTPUT = [f"Processed item-{i}" for i in range(1, 6)]


@pytest.fixture(scope="module")
def postgres() -> Iterator[LocalPostgres]:
    """A private PostgreSQL cluster in a temporary folder the `postgres` user can reach."""
    folder = Path(tempfile.mkdtemp(prefix="fanout-pg-"))
    try:
        with running_postgres(folder) as cluster:
            yield cluster
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def production_server(postgres: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrefectServer]:
    """`prefect server start` on that PostgreSQL database, with API auth switched on."""
    home = tmp_path_factory.mktemp("prefect-home")
    with running_prefect_server(home, database_url=postgres.database_url(), auth_string=f"fanout:{secrets.token_hex(8)}") as server:
        yield server


def fanout_run(server: PrefectServer, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`fanout run` in a subprocess that talks to `server` (with its auth unless `env` says otherwise)."""
    environment = {**(env or server.client_env()), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run([sys.executable, "-m", "deployments.cli", "run", *args], capture_output=True, text=True,
                          env=environment, timeout=240, cwd=REPO_ROOT)


def test_anonymous_api_calls_are_refused(production_server: PrefectServer) -> None:
    """Without the auth string the API answers 401; health checks stay open."""
    assert httpx.post(f"{production_server.api_url}/flow_runs/filter", json={}, timeout=10).status_code == 401
    assert httpx.get(f"{production_server.api_url}/health", timeout=10).status_code == 200


def test_seed_run_is_recorded_in_postgres(production_server: PrefectServer, postgres: LocalPostgres) -> None:
    """A seed run against the server completes and its flow and task runs are rows in PostgreSQL."""
    done = fanout_run(production_server, "--instance-id", "pg-seed")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == SEED_OUTPUT
    states = postgres.query("SELECT state_type FROM flow_run WHERE name IS NOT NULL ORDER BY created DESC LIMIT 1")
    assert states == "COMPLETED"
    assert postgres.query("SELECT count(*) FROM artifact WHERE key = 'fanout-run-pg-seed-items'") == "1"


def test_a_client_without_the_auth_string_cannot_start_a_run(production_server: PrefectServer) -> None:
    """A client that does not send the auth string fails instead of running unrecorded."""
    env = {k: v for k, v in production_server.client_env().items() if k != "PREFECT_API_AUTH_STRING"}
    done = fanout_run(production_server, env=env)
    assert done.returncode != 0
    assert "401" in done.stderr or "Unauthorized" in done.stderr

"""The production backend: a Prefect server on PostgreSQL that refuses anonymous API calls."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from fanout.localstack.postgres import LocalPostgres, private_postgres
from fanout.localstack.processes import PrefectServer
from fanout.localstack.stack import LocalStack
from tests.conftest import REPO_ROOT
from tests.support.stacks import poll_until_finished, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

TOKEN = "production-webhook-token-0123456789"
SEED_OUTPUT = [f"Processed item-{i}" for i in range(1, 6)]


@pytest.fixture(scope="module")
def postgres() -> Iterator[LocalPostgres]:
    """A private PostgreSQL cluster for this module."""
    with private_postgres() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def production_stack(postgres: LocalPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The whole stack as `fanout up --database postgres --auth` runs it: server on PostgreSQL with API auth,
    deployment, a worker and the webhook, every client given the auth string."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FANOUT_", "PREFECT_API"))}
    env["PYTHONPATH"] = str(REPO_ROOT)
    stack = LocalStack(
        home=tmp_path_factory.mktemp("production"),
        database_url=postgres.database_url(),
        auth_string=f"fanout:{secrets.token_hex(12)}",
        env=env,
        token=TOKEN,
    )
    try:
        yield stack.start()
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def production_server(production_stack: LocalStack) -> PrefectServer:
    assert production_stack.server is not None
    return production_stack.server


def fanout_run(
    server: PrefectServer, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`fanout run` in a subprocess that talks to `server` (with its auth unless `env` says otherwise)."""
    environment = {**(env or server.client_env()), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "fanout.cli.cli", "run", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=240,
        cwd=REPO_ROOT,
    )


def test_anonymous_api_calls_are_refused(production_server: PrefectServer) -> None:
    """Without the auth string the API answers 401; health checks stay open."""
    assert httpx.post(f"{production_server.api_url}/flow_runs/filter", json={}, timeout=10).status_code == 401
    assert httpx.get(f"{production_server.api_url}/health", timeout=10).status_code == 200


def test_seed_run_is_recorded_in_postgres(production_server: PrefectServer, postgres: LocalPostgres) -> None:
    """A seed run against the server completes and its flow and task runs are rows in PostgreSQL."""
    done = fanout_run(production_server, "--instance-id", "pg-seed")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == SEED_OUTPUT
    states = postgres.query("SELECT state_type FROM flow_run WHERE parameters->'request'->>'instance_id' = 'pg-seed'")
    assert states == "COMPLETED"
    recorded = wait_for(  # task runs reach the database through Prefect's event pipeline, with a lag
        lambda: int(postgres.query("SELECT count(*) FROM task_run WHERE name LIKE 'process_item-item-%'")) >= 5,
        timeout=90,
        what="5 task runs in PostgreSQL",
    )
    assert recorded
    assert postgres.query("SELECT count(*) FROM artifact WHERE key = 'fanout-run-pg-seed-items'") == "1"


def test_seed_scenario_through_the_webhook_on_postgres_with_auth(production_stack: LocalStack) -> None:
    """POST /api/start-fanout -> 202 -> poll -> 200 with the seed's five results; worker and webhook pass the auth."""
    with httpx.Client(
        base_url=production_stack.webhook_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
    ) as client:
        accepted = client.post("/api/start-fanout", json={"instance_id": "pg-webhook"})
        assert accepted.status_code == 202, accepted.text
        finished = poll_until_finished(client, accepted.json()["statusQueryGetUri"])
    assert finished.status_code == 200
    assert finished.json()["runtimeStatus"] == "Completed"
    assert finished.json()["output"] == SEED_OUTPUT


def test_a_client_without_the_auth_string_cannot_start_a_run(production_server: PrefectServer) -> None:
    """A client that does not send the auth string fails instead of running unrecorded."""
    env = {k: v for k, v in production_server.client_env().items() if k != "PREFECT_API_AUTH_STRING"}
    done = fanout_run(production_server, env=env)
    assert done.returncode != 0
    assert "401" in done.stderr or "Unauthorized" in done.stderr

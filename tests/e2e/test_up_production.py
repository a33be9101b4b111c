"""`fanout up --database postgres --auth`: the production backend, a Prefect server on PostgreSQL that refuses
anonymous API calls, under the whole local stack; one stack for the module (the SIGTERM test, last, stops it)."""

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
from tests.conftest import REPO_ROOT
from tests.support.fanout_up import printed
from tests.support.stacks import poll_until_finished, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

FANOUT = str(Path(sys.executable).with_name("fanout"))
SEED_OUTPUT = [f"Processed item-{i}" for i in range(1, 6)]


def auth_string(home: Path) -> str:
    """The Prefect API's auth string, from where `fanout up` keeps it."""
    return (home / "prefect-auth").read_text().strip()


def cluster(home: Path) -> LocalPostgres:
    """The PostgreSQL cluster `fanout up` runs in its home, for queries."""
    postgres = LocalPostgres(folder=home / "postgres")
    postgres.password = postgres.password_file.read_text().strip()
    postgres.port = postgres.running_port() or 0
    assert postgres.port, "fanout up's PostgreSQL is not running"
    return postgres


def fanout_run(up: tuple[Child, Path], *args: str, auth: bool = True) -> subprocess.CompletedProcess[str]:
    """`fanout run` in a subprocess that talks to the stack's Prefect API (with its auth string unless `auth`
    is False)."""
    child, home = up
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_API")}
    env |= {"PREFECT_API_URL": printed(child, "Prefect API"), "PYTHONPATH": str(REPO_ROOT)}
    env |= {"PREFECT_HOME": str(home.parent / "client-home"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    if auth:
        env["PREFECT_API_AUTH_STRING"] = auth_string(home)
    return subprocess.run(
        [sys.executable, "-m", "fanout.cli.cli", "run", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=REPO_ROOT,
    )


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
    auth = httpx.BasicAuth(*auth_string(home).split(":", 1))
    assert httpx.post(f"{api}/flow_runs/filter", json={}, auth=auth, timeout=10).status_code == 200


def test_health_checks_answer_without_the_auth_string(production_up: tuple[Child, Path]) -> None:
    """With API auth on, the health check still answers without the auth string."""
    child, _ = production_up
    assert httpx.get(f"{printed(child, 'Prefect API')}/health", timeout=10).status_code == 200


def test_seed_run_is_recorded_in_postgres(production_up: tuple[Child, Path]) -> None:
    """A seed run against the server completes and its flow and task runs are rows in PostgreSQL."""
    done = fanout_run(production_up, "--instance-id", "pg-seed")
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == SEED_OUTPUT
    postgres = cluster(production_up[1])
    states = postgres.query("SELECT state_type FROM flow_run WHERE parameters->'request'->>'instance_id' = 'pg-seed'")
    assert states == "COMPLETED"
    recorded = wait_for(  # task runs reach the database through Prefect's event pipeline, with a lag
        lambda: int(postgres.query("SELECT count(*) FROM task_run WHERE name LIKE 'process_item-item-%'")) >= 5,
        timeout=90,
        what="5 task runs in PostgreSQL",
    )
    assert recorded
    assert postgres.query("SELECT count(*) FROM artifact WHERE key = 'fanout-run-pg-seed-items'") == "1"


def test_seed_scenario_through_the_webhook_on_postgres_with_auth(production_up: tuple[Child, Path]) -> None:
    """POST /api/start-fanout -> 202 -> poll -> 200 with the seed's five results; worker and webhook pass the auth."""
    _, home = production_up
    url = (home / "webhook-url").read_text().strip()
    headers = {"Authorization": f"Bearer {(home / 'webhook-token').read_text().strip()}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        accepted = client.post("/api/start-fanout", json={"instance_id": "pg-webhook"})
        assert accepted.status_code == 202, accepted.text
        finished = poll_until_finished(client, accepted.json()["statusQueryGetUri"])
    assert finished.status_code == 200
    assert finished.json()["runtimeStatus"] == "Completed"
    assert finished.json()["output"] == SEED_OUTPUT


def test_a_client_without_the_auth_string_cannot_start_a_run(production_up: tuple[Child, Path]) -> None:
    """A client that does not send the auth string fails instead of running unrecorded."""
    done = fanout_run(production_up, auth=False)
    assert done.returncode != 0
    assert "401" in done.stderr or "Unauthorized" in done.stderr


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
    assert json.loads(done.stdout) == SEED_OUTPUT


def test_sigterm_stops_the_stack_and_its_postgres(production_up: tuple[Child, Path]) -> None:
    """SIGTERM ends `fanout up`, and the PostgreSQL cluster it started is stopped too."""
    child, home = production_up
    os.killpg(child.process.pid, signal.SIGTERM)
    assert child.process.wait(timeout=120) == 0
    assert LocalPostgres(folder=home / "postgres").running_port() is None

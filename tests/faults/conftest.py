"""One real local stack (server, fanout's deployments, crash-resume automations, webhook) for the
fault suite; each test brings its own workers and workspace.

`fault_database_url` is None (SQLite); FANOUT_E2E_DATABASE=postgres (`make test-postgres`) runs the
same scenarios on a private PostgreSQL cluster, FANOUT_FAULTS_DATABASE_URL on a database you name.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fanout.localstack.postgres import private_postgres
from tests.support.fault_scenarios import Workspace
from tests.support.fault_stack import FaultStack, fault_stack

CRASH_SETTINGS = {"FANOUT_HEARTBEAT_SECONDS": "30", "FANOUT_CRASH_AFTER_SECONDS": "60", "FANOUT_MAX_AUTO_RETRIES": "1"}
"""Alive events every 2 s, resumed after 12 s of silence (the defaults); heartbeats every 30 s (Prefect's
minimum), crashed after 60 s without one; one automatic retry."""


@pytest.fixture(scope="session")
def fault_database_url() -> Iterator[str | None]:
    """The Prefect server's database: SQLite unless FANOUT_FAULTS_DATABASE_URL is set, or
    FANOUT_E2E_DATABASE=postgres asks for a private PostgreSQL cluster (started here, stopped after)."""
    if os.environ.get("FANOUT_E2E_DATABASE") == "postgres":
        with private_postgres() as cluster:
            yield cluster.database_url()
        return
    yield os.environ.get("FANOUT_FAULTS_DATABASE_URL") or None


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, fault_database_url: str | None) -> Iterator[FaultStack]:
    """The stack with automations shaped by CRASH_SETTINGS; always stopped at the end."""
    with fault_stack(tmp_path_factory.mktemp("fault-stack"), CRASH_SETTINGS, fault_database_url) as started:
        yield started


@pytest.fixture
def workspace(stack: FaultStack, tmp_path: Path) -> Iterator[Workspace]:
    """This test's execution log and result storage; its workers and unfinished runs end with it."""
    yield Workspace(tmp_path / "fault", storage=stack.results)
    stack.stop_workers()
    stack.cancel_unfinished()


@pytest.fixture
def webhook(stack: FaultStack) -> Iterator[httpx.Client]:
    """An HTTP client for the stack's webhook starter, with its bearer token."""
    local = stack.local
    with httpx.Client(
        base_url=local.webhook_url, headers={"Authorization": f"Bearer {local.token}"}, timeout=30
    ) as client:
        yield client

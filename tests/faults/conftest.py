"""The fault tier's view of the test process's stack (`local_stack`, tests/conftest.py: server, fanout's
deployments, crash-resume automations, webhook): the fault moves on it (tests/support/fault_stack.py);
each test brings its own workers and workspace.

FANOUT_E2E_DATABASE=postgres (`make test-postgres`) puts the stack on a private PostgreSQL cluster,
FANOUT_FAULTS_DATABASE_URL on a database you name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fanout.localstack.stack import LocalStack
from tests.support.fault_scenarios import Workspace
from tests.support.fault_stack import FaultStack


@pytest.fixture(scope="session")
def stack(local_stack: LocalStack) -> FaultStack:
    """The stack with the fault moves (kill a worker and its runs, restart the server, start and watch runs)."""
    return FaultStack.on(local_stack)


@pytest.fixture
def workspace(stack: FaultStack, tmp_path: Path) -> Iterator[Workspace]:
    """This test's execution log and result storage; no earlier test's unfinished run is left for its
    workers to resume, and its own workers and unfinished runs end with it."""
    stack.cancel_unfinished()
    yield Workspace(tmp_path / "fault", storage=stack.results)
    stack.stop_workers()
    stack.cancel_unfinished()


@pytest.fixture
def webhook(stack: FaultStack) -> Iterator[httpx.Client]:
    """An HTTP client for the stack's webhook starter, with its bearer token."""
    local = stack.local
    with httpx.Client(base_url=local.webhook_url, headers=local.webhook_headers, timeout=30) as client:
        yield client

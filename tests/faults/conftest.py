"""One real stack (server, deployment, automations) for the fault suite; each test brings its own workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.scenarios import Workspace
from tests.support.fault_stack import FaultStack, fault_stack

CRASH_SETTINGS = {"FANOUT_HEARTBEAT_SECONDS": "30", "FANOUT_CRASH_AFTER_SECONDS": "60", "FANOUT_MAX_AUTO_RETRIES": "1"}
"""Heartbeats every 30 s (Prefect's minimum), crashed after 60 s without one, one automatic retry."""


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """A Prefect server with the fanout deployment and its crash-resume automations."""
    with fault_stack(tmp_path_factory.mktemp("fault-stack"), CRASH_SETTINGS) as started:
        yield started


@pytest.fixture
def workspace(stack: FaultStack, tmp_path: Path) -> Iterator[Workspace]:
    """This test's execution log and result storage; its workers and unfinished runs end with it."""
    started = len(stack.workers)
    yield Workspace(tmp_path / "fault")
    stack.cancel_unfinished()
    for worker in stack.workers[started:]:
        worker.stop(grace=5)

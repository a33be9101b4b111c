"""Unit tests run in this process: no child process, no Prefect server (a test that needs one lives in
tests/integration). The guard below makes a test that starts a process fail, naming what it started."""

from __future__ import annotations

import _posixsubprocess
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import prefect.server.schemas.schedules  # noqa: F401 - see below
import pytest

from tests.support.fake_instances import FakeManagedRuns

# Imported before any guard goes up: Prefect's vendored croniter runs `file` on the interpreter when it is
# first imported (platform.architecture()), an import side effect, not a process a test starts.

TIER_RULE = "unit tests run in-process: a test that starts a process or a Prefect server belongs in tests/integration"


class ChildProcessRefused(RuntimeError):
    """A unit test tried to start a process."""


@pytest.fixture(autouse=True)
def no_child_processes(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Refuse every way of starting a process (subprocess, multiprocessing, os.fork; Prefect's temporary
    server for a client with no API URL is one), and fail the test even when the code under test swallowed
    the refusal."""
    attempts: list[str] = []

    def refuse(what: str) -> Any:
        def refused(*args: object, **kwargs: object) -> Any:
            attempts.append(f"{what}{args[:2]!r}"[:200])
            raise ChildProcessRefused(f"{what}: {TIER_RULE}")

        return refused

    monkeypatch.setattr(subprocess, "_fork_exec", refuse("subprocess"))
    monkeypatch.setattr(_posixsubprocess, "fork_exec", refuse("multiprocessing"))
    monkeypatch.setattr(os, "fork", refuse("os.fork"))
    monkeypatch.setattr(os, "posix_spawn", refuse("os.posix_spawn"))
    monkeypatch.setattr(os, "posix_spawnp", refuse("os.posix_spawnp"))
    yield
    assert not attempts, f"{TIER_RULE}; started: {attempts}"


@pytest.fixture
def runs() -> FakeManagedRuns:
    """In-memory Prefect runs behind the webhook app (tests/support/fake_runs.py, fake_instances.py)."""
    return FakeManagedRuns()

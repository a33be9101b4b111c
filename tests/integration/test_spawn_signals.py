"""Children of the local stack hear SIGINT even when their parent was started ignoring it."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fanout.localstack.processes import spawn


@pytest.fixture
def ignoring_sigint() -> Iterator[None]:
    """This process ignores SIGINT, as a job a shell started in the background does; restored after."""
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_child_started_from_a_process_ignoring_sigint_does_not_ignore_it(
    ignoring_sigint: None, tmp_path: Path
) -> None:
    """A spawned Python child starts with SIGINT at its default (Python's KeyboardInterrupt handler), not ignored."""
    probe = "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"
    child = spawn("probe", [sys.executable, "-c", probe], {}, tmp_path)
    assert child.process.wait(timeout=60) == 0
    assert child.log_path.read_text().strip() == "True"

"""Children of the local stack hear SIGINT even when their parent was started ignoring it, and stop when it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from fanout.localstack.polling import wait_for
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


SUPERVISOR = """
import sys, time
from pathlib import Path
from fanout.localstack.polling import wait_for
from fanout.localstack.processes import spawn
child = spawn(sys.argv[2], [sys.executable, "-c", "import time; time.sleep(600)"], {}, Path(sys.argv[1]))
print(child.process.pid, flush=True)
time.sleep(600)
"""


def started_child(tmp_path: Path, name: str) -> tuple[subprocess.Popen[str], int]:
    """A supervisor process that spawned a sleeping child with `spawn`, and the child's pid."""
    supervisor = subprocess.Popen(
        [sys.executable, "-c", SUPERVISOR, str(tmp_path), name], stdout=subprocess.PIPE, text=True
    )
    assert supervisor.stdout is not None
    return supervisor, int(supervisor.stdout.readline())


def test_a_child_stops_when_its_supervisor_is_killed(tmp_path: Path) -> None:
    """SIGKILL the process that spawned a child: the child is sent SIGTERM and exits, holding no port."""
    supervisor, pid = started_child(tmp_path, "orphan")
    try:
        supervisor.kill()
        supervisor.wait(timeout=60)
        wait_for(lambda: not alive(pid), 30, "the child to exit", interval=0.1)
    finally:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, reaped by init soon after, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"

"""`fanout run` leaves behind only the Prefect server it announced, and the announced command stops it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.database import seed_database
from tests.support.stacks import wait_for

pytestmark = pytest.mark.e2e

ANNOUNCED = re.compile(r"started a Prefect server at (\S+) \(pid (\d+),.*`(fanout server stop)` stops it")


def marked_processes(marker: str) -> set[int]:
    """Live processes whose environment carries `marker` (everything `fanout run` started inherits it)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in environ and state != "Z":
            found.add(int(entry.name))
    return found


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


def fanout(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("fanout")), *args]
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_fanout_run_leaves_only_the_announced_server_and_its_stop_command_stops_it(tmp_path: Path) -> None:
    """After `fanout run` only the server it named on stderr is left (in its own session); `fanout server stop` ends it."""
    marker = uuid.uuid4().hex
    env = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    env["FANOUT_TEST_MARKER"] = marker
    seed_database(tmp_path / ".fanout" / "server" / "prefect")
    try:
        first = fanout("run", "--count", "2", env=env, cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        announced = ANNOUNCED.search(first.stderr)
        assert announced, first.stderr
        server_pid = int(announced.group(2))
        left = marked_processes(marker)
        assert left and all(session_of(pid) == server_pid for pid in left), (left, server_pid)

        second = fanout("run", "--count", "2", env=env, cwd=tmp_path)
        assert second.returncode == 0 and f"(pid {server_pid})" in second.stderr, second.stderr
        assert second.stdout.strip().startswith("[")

        stopped = fanout(*announced.group(3).split()[1:], env=env, cwd=tmp_path)
        assert stopped.returncode == 0, stopped.stderr
        wait_for(
            lambda: not marked_processes(marker),
            timeout=60,
            interval=0.2,
            what="every process fanout run started to end",
        )
    finally:
        fanout("server", "stop", env=env, cwd=tmp_path)

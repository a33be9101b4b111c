"""What the dev stack's processes create is owner-only, whatever the caller's umask."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

from fanout.localstack.polling import wait_for
from fanout.localstack.processes import spawn


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_a_stack_process_creates_are_owner_only(tmp_path: Path) -> None:
    """A process the stack spawns writes files 0600 (its umask is 077), whatever the caller's umask."""
    target = tmp_path / "written"
    argv = [sys.executable, "-c", f"open({str(target)!r}, 'w').write('x')"]
    child = spawn("writer", argv, {}, tmp_path / "logs")
    wait_for(lambda: child.process.poll() is not None, 60, "the writer to exit")
    assert mode(target) == 0o600
    assert mode(child.log_path) == 0o600

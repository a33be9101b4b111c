"""Which lease holders a new run of an instance may treat as dead, checked against a real process that ended."""

from __future__ import annotations

import socket
import subprocess
import sys

from fanout.engine.instance_lease import _dead_here


def test_a_process_that_exited_on_this_host_is_dead() -> None:
    """A holder whose process is gone (as after kill -9) is dead, so its lease can be released."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    assert _dead_here(f"{socket.gethostname()}:{child.stdout.strip()}") is True

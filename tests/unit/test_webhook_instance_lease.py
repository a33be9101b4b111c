"""Which lease holders a new run of an instance may treat as dead (src/fanout/engine/instance_lease.py)."""

from __future__ import annotations

import os
import socket

from fanout.engine.instance_lease import _dead_here, _owner


def test_a_live_process_on_this_host_is_not_dead() -> None:
    """The holder recorded by this very process is alive."""
    assert _dead_here(_owner()) is False


def test_a_holder_on_another_host_is_trusted() -> None:
    """A holder elsewhere cannot be checked, so it keeps its lease until it lapses."""
    assert _dead_here(f"not-{socket.gethostname()}:{os.getpid() + 99999}") is False

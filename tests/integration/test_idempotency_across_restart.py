"""The idempotency key a processor sees survives its process dying and the instance being run again."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_key_is_the_same_before_and_after_a_crash_and_restart(
    monkeypatch: pytest.MonkeyPatch, cli, cli_here, execution_log: Path
) -> None:
    """The item running when the process died sees `<instance>/<item>` again when the instance reruns."""
    monkeypatch.setenv("FANOUT_TEST_CRASH_AT", "item-3")
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "1")
    assert cli("run", "--count", "4", "--instance-id", "steady").returncode == 17
    monkeypatch.delenv("FANOUT_TEST_CRASH_AT")  # the rerun runs in this process
    assert cli_here("run", "--count", "4", "--instance-id", "steady").returncode == 0
    seen = [path.read_text().split() for path in execution_log.glob("item-3.*")]
    assert len(seen) == 2 and {key for key, _ in seen} == {"steady/item-3"}

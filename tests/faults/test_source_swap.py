"""A source file swapped for a link out of FANOUT_SOURCE_ROOTS after the 202: the run fails saying so, unread."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.fault_scenarios import Workspace, start_worker
from tests.support.fault_stack import FaultStack
from tests.support.stacks import poll_until_finished

pytestmark = pytest.mark.faults

SECRET = "not-for-the-webhook"


def test_a_source_swapped_for_a_link_outside_the_roots_fails_the_run(
    stack: FaultStack, workspace: Workspace, webhook: httpx.Client, tmp_path: Path
) -> None:
    """Admitted under the roots, replaced by a link to an outside file before any worker reads it: Failed, with why."""
    roots = Path(stack.local.env["FANOUT_SOURCE_ROOTS"])
    roots.mkdir(parents=True, exist_ok=True)
    source = roots / "swapped.txt"
    source.write_text("item-1\nitem-2\n")
    outside = tmp_path / "outside.txt"
    outside.write_text(f"{SECRET}\n")
    accepted = webhook.post("/api/start-fanout", json={"source": {"uri": str(source)}, "instance_id": "swapped"})
    assert accepted.status_code == 202, accepted.text
    source.unlink()
    source.symlink_to(outside)
    start_worker(stack, workspace)
    done = poll_until_finished(webhook, accepted.json()["statusQueryGetUri"], timeout=300)
    assert done.json()["runtimeStatus"] == "Failed", done.text
    assert "outside FANOUT_SOURCE_ROOTS" in done.text
    assert SECRET not in done.text and not workspace.executed()

"""One run per instance wherever it starts: while the webhook's run of an instance works, `fanout run` of the
same instance on another Prefect server, sharing the result storage, is refused and runs nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from fanout.localstack.polling import wait_for
from fanout.localstack.processes import running_prefect_server
from tests.conftest import REPO_ROOT
from tests.support.database import seed_database
from tests.support.fault_scenarios import Workspace, start_worker
from tests.support.fault_stack import FaultStack
from tests.support.up_restart import wait_for_answer

pytestmark = pytest.mark.faults

FANOUT = str(Path(sys.executable).with_name("fanout"))
COUNT = 60


def test_fanout_run_on_another_server_is_refused_while_the_webhook_run_holds_the_instance(
    stack: FaultStack, workspace: Workspace, webhook: httpx.Client, tmp_path: Path
) -> None:
    """`fanout run --instance-id same` against a second Prefect server exits 2 naming the holder; every
    item of the webhook's run ran once."""
    release = tmp_path / "release"
    start_worker(stack, workspace, FANOUT_TEST_HOLD_UNTIL=str(release), FANOUT_MAX_PARALLEL="2")
    instance = "shared-instance"
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FANOUT_", "PREFECT_"))}
    seeded = seed_database(tmp_path / "other-server")
    with running_prefect_server(tmp_path / "other-server", extra_env=seeded) as other:
        started = webhook.post("/api/start-fanout", json={"count": COUNT, "instance_id": instance})
        assert started.status_code == 202, started.text
        wait_for(lambda: bool(workspace.executed()), 120, "the webhook's run working", interval=0.2)
        env |= {**workspace.env(), "PYTHONPATH": str(REPO_ROOT), "PREFECT_API_URL": other.api_url}
        second = subprocess.run(
            [FANOUT, "run", "--count", str(COUNT), "--instance-id", instance],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        still_working = len(workspace.checkpointed(instance)) < COUNT
        release.touch()
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"instance {instance} is already running as flow run" in second.stderr
    assert still_working, "the webhook's run had finished before the second starter asked"
    finished = wait_for_answer(
        lambda: webhook.get(f"/api/instances/{instance}"), 200, 240, "the webhook's run to finish"
    )
    assert finished.json()["runtimeStatus"] == "Completed"
    assert workspace.executed() == {f"item-{i}": 1 for i in range(1, COUNT + 1)}

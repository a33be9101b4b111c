"""`fanout serve` (flow.serve) runs the deployed flow with no work pool or worker."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

from fanout.localstack.processes import spawn
from fanout.localstack.stack import LocalStack
from tests.conftest import REPO_ROOT
from tests.support.stacks import fanout_env, finished_output, wait_for

pytestmark = pytest.mark.e2e


def test_serve_runs_a_flow_run_of_its_deployment(stack: LocalStack, prefect_api: httpx.Client, tmp_path: Path) -> None:
    """`fanout serve` registers fan-out-fan-in/serve and runs a flow run created for it."""
    argv = [str(Path(sys.executable).with_name("fanout")), "serve"]
    child = spawn("serve", argv, stack.client_env(**fanout_env()), tmp_path / "logs", cwd=REPO_ROOT)
    try:
        deployment = wait_for(
            lambda: (lambda r: r.json() if r.status_code == 200 else None)(
                prefect_api.get("/deployments/name/fan-out-fan-in/serve")
            ),
            timeout=120,
            interval=0.25,
            what="the serve deployment",
        )
        created = prefect_api.post(
            f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": {"request": {"count": 2}}}
        )
        assert created.status_code == 201, created.text
        state, output = finished_output(stack, created.json()["id"])
        assert state == "COMPLETED" and output == ["Processed item-1", "Processed item-2"], child.log_tail()
    finally:
        child.stop()

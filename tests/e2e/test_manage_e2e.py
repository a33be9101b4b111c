"""Managing a run started without the webhook, through `fanout` commands that talk HTTP to the real webhook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from fanout.localstack.processes import Child
from fanout.localstack.stack import DEPLOYMENT, LocalStack
from tests.conftest import REPO_ROOT
from tests.support.stacks import poll_until_finished

pytestmark = pytest.mark.e2e


def fanout(stack: LocalStack, *args: str) -> tuple[int, Any, str]:
    """`fanout <args>` against the stack's webhook: exit code, parsed stdout, stderr."""
    env = {**os.environ, "FANOUT_URL": stack.webhook_url, "FANOUT_WEBHOOK_TOKEN": stack.token}
    done = subprocess.run(
        [sys.executable, "-m", "fanout.cli.cli", *args],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
        cwd=REPO_ROOT,
    )
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None, done.stderr


def test_a_deployment_run_is_listed_read_and_purged_by_its_flow_run_id(
    stack: LocalStack, worker: Child, webhook: httpx.Client, prefect_api: httpx.Client
) -> None:
    """A `prefect deployment run`-style run completes on a worker; `fanout list`, `status` and `purge` find it
    by its flow-run id, and purge deletes its run, artifacts and checkpoints, and says so."""
    results = stack.settings().result_storage  # the webhook's; the worker checkpoints there too
    deployment = prefect_api.get(f"/deployments/name/{DEPLOYMENT}").json()
    run_id = prefect_api.post(
        f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": {"request": {"count": 3}}}
    ).json()["id"]
    assert poll_until_finished(webhook, f"/api/instances/{run_id}").status_code == 200
    code, status, stderr = fanout(stack, "status", run_id)
    assert code == 0 and status["runtimeStatus"] == "Completed", stderr
    code, listed, _ = fanout(stack, "list", "--status", "Completed", "--top", "50")
    assert code == 0 and run_id in [entry["instanceId"] for entry in listed]
    folder = Path(results) / "fanout" / run_id
    assert folder.exists()
    code, report, stderr = fanout(stack, "purge", run_id)
    assert code == 0, stderr
    assert (report["instancesDeleted"], report["runsDeleted"], report["checkpointsDeleted"]) == (1, 1, 3)
    assert report["artifactsDeleted"] >= 2  # the run's item table and metrics at least
    assert report["outputsDeleted"] == 2  # fanout's output record and the run's persisted return value
    assert not folder.exists()
    assert prefect_api.get(f"/flow_runs/{run_id}").status_code == 404
    assert fanout(stack, "status", run_id)[0] == 2

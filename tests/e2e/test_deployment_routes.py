"""`POST /api/start-fanout/{deployment}` on the real stack: prefect.yaml's `http-enrich` pipeline (deployed from
the checkout's prefect.yaml, as the package no longer carries it), and an unknown name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fanout.localstack.processes import Child, answers_as, free_port, spawn
from fanout.localstack.stack import LocalStack
from tests.conftest import REPO_ROOT
from tests.support.stacks import STACK_TOKEN, poll_until_finished, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", autouse=True)
def http_enrich(stack: LocalStack) -> None:
    """The checkout's prefect.yaml deploys `http-enrich` on the session's stack (`prefect deploy --name`)."""
    stack.deploy_project(REPO_ROOT, ["http-enrich"])


@pytest.fixture(scope="module")
def echo_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The pipeline's local test service (tests/support/echo_service.py), for the module; stopped after it."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.support.echo_service", "--port", str(port), "--delay", "0.01"]
    logs = tmp_path_factory.mktemp("echo") / "logs"
    child: Child = spawn("echo", argv, dict(os.environ), logs, cwd=REPO_ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: answers_as(f"{base}/health", nonce=None), timeout=30, what="the echo service")
        yield base
    finally:
        child.stop()


def test_the_http_enrich_deployment_runs_its_own_processor(
    webhook: httpx.Client, worker: Any, echo_service: str
) -> None:
    """A start of `http-enrich` runs that deployment's async GET per item, and its status URL reads it."""
    items = [{"id": index, "url": f"{echo_service}/items/{index}"} for index in range(1, 4)]
    started = webhook.post("/api/start-fanout/http-enrich", json={"items": items, "item_key": "id"})
    assert started.status_code == 202, started.text
    done = poll_until_finished(webhook, started.headers["location"])
    assert done.status_code == 200 and done.json()["runtimeStatus"] == "Completed", done.text
    assert done.json()["output"] == [
        {"id": index, "status": 200, "body": {"id": str(index), "enriched": True}} for index in range(1, 4)
    ]


def test_an_unknown_deployment_is_404_and_creates_no_run(webhook: httpx.Client, prefect_api: httpx.Client) -> None:
    """A deployment Prefect does not know: 404 naming it, and no flow run."""
    before = prefect_api.post("/flow_runs/count", json={}).json()
    response = webhook.post("/api/start-fanout/no-such-pipeline", json={"instance_id": "nowhere", "count": 1})
    assert response.status_code == 404 and "no-such-pipeline" in response.json()["detail"]
    assert prefect_api.post("/flow_runs/count", json={}).json() == before
    assert webhook.get("/api/instances/nowhere").status_code == 404


def test_fanout_start_runs_a_named_deployment_over_a_source_file(
    stack: LocalStack, worker: Any, echo_service: str, tmp_path: Path
) -> None:
    """`fanout start --deployment http-enrich --source F --item-key id --wait` prints that pipeline's output."""
    sources = stack.home / "sources"
    sources.mkdir(exist_ok=True)
    items = sources / "cli-items.jsonl"
    items.write_text("".join(json.dumps({"id": n, "url": f"{echo_service}/items/{n}"}) + "\n" for n in (1, 2)))
    argv = [str(Path(sys.executable).with_name("fanout")), "start", "--url", stack.webhook_url, "--wait"]
    argv += ["--deployment", "http-enrich", "--source", str(items), "--format", "jsonl", "--item-key", "id"]
    env = {**os.environ, "FANOUT_WEBHOOK_TOKEN": STACK_TOKEN}
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [
        {"id": n, "status": 200, "body": {"id": str(n), "enriched": True}} for n in (1, 2)
    ]

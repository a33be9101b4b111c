"""`fanout list | status | terminate | purge` against a real webhook (uvicorn) on the session's Prefect
test server: runs started without the webhook, found by flow-run id, purged with what they left."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect import get_client
from prefect.client.schemas.actions import ArtifactCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.exceptions import ObjectNotFound
from prefect.filesystems import LocalFileSystem
from prefect.states import State, StateType

from fanout.localstack.processes import LOOPBACK, free_port, spawn, wait_healthy
from fanout.storage.checkpoints import CheckpointStore
from tests.conftest import REPO_ROOT
from tests.support.cli import invoke_cli

TOKEN = "manage-cli-test-token-0123456789"
DEPLOYMENT = "manage-cli"
PROCESSOR = "fanout.engine.processor:processed"


@pytest.fixture(scope="module")
def deployment_id(prefect_api: str) -> UUID:
    """A deployment of the fan-out-fan-in flow with no worker: its runs stay where a test puts them."""

    async def register() -> UUID:
        async with get_client() as client:
            flow_id = await client.create_flow_from_name("fan-out-fan-in")
            return await client.create_deployment(
                flow_id=flow_id, name=DEPLOYMENT, entrypoint="src/fanout/seed.py:fan_out_fan_in"
            )

    return asyncio.run(register())


@pytest.fixture
def webhook(prefect_api: str, deployment_id: UUID, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """The real webhook under uvicorn on a free port, with this test's result storage; its URL."""
    monkeypatch.setenv("FANOUT_WEBHOOK_TOKEN", TOKEN)  # the webhook requires it, the CLI sends it
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO_ROOT),
        "FANOUT_PREFECT_API_URL": prefect_api,
        "FANOUT_DEPLOYMENT_NAME": f"fan-out-fan-in/{DEPLOYMENT}",
        "FANOUT_WEBHOOK_QUEUE_PATH": str(tmp_path / "starts.sqlite"),
    }
    argv = [sys.executable, "-m", "uvicorn", "--factory", "fanout.api.webhook:app_from_environment"]
    child = spawn("webhook", [*argv, "--host", LOOPBACK, "--port", str(port)], env, tmp_path / "logs", REPO_ROOT)
    url = f"http://{LOOPBACK}:{port}"
    try:
        wait_healthy(f"{url}/health", child, timeout=120)
        yield url
    finally:
        child.stop()


def fanout(webhook: str, prefect_api: str, *args: str) -> tuple[int, Any, str]:
    """`fanout <args> --url <webhook>`, in this process (the command's HTTP calls are what is tested): exit code,
    parsed stdout (None when empty), stderr."""
    done = invoke_cli(*args, "--url", webhook, api_url=prefect_api)
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else None, done.stderr


def deployment_run(deployment_id: UUID, state: StateType, instance_id: str | None = None, artifacts: int = 0) -> UUID:
    """A run created as `prefect deployment run` does (no instance tag), put in `state`, with artifacts."""

    async def create() -> UUID:
        async with get_client() as client:
            request = {"instance_id": instance_id} if instance_id else {}
            run = await client.create_flow_run_from_deployment(deployment_id, parameters={"request": request})
            await client.set_flow_run_state(run.id, State(type=state), force=True)
            for number in range(artifacts):
                await client.create_artifact(
                    ArtifactCreate(type="markdown", data=f"report {number}", flow_run_id=run.id)
                )
            return run.id

    return asyncio.run(create())


def left_on_prefect(flow_run_id: UUID) -> tuple[bool, int]:
    """Whether the flow run still exists, and how many artifacts of it remain."""

    async def read() -> tuple[bool, int]:
        async with get_client() as client:
            of_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
            artifacts = await client.read_artifacts(artifact_filter=of_run)
            try:
                await client.read_flow_run(flow_run_id)
            except ObjectNotFound:
                return False, len(artifacts)
            return True, len(artifacts)

    return asyncio.run(read())


def checkpoints(results: Path, instance_id: str, items: list[str]) -> Path:
    """The records a run of `items` left; the instance's folder."""
    store = CheckpointStore(LocalFileSystem(basepath=str(results)), instance_id, PROCESSOR)
    with store.journal("process_batch-0") as journal:
        for item in items:
            journal.append(item, f"Processed {item}")
    return results / "fanout" / instance_id


def test_a_deployment_run_is_found_by_flow_run_id_and_purged_with_what_it_left(
    webhook: str, prefect_api: str, deployment_id: UUID, clean_settings: Path
) -> None:
    """status and purge take a flow-run id; purge deletes run, artifacts and checkpoints and says so."""
    run_id = deployment_run(deployment_id, StateType.COMPLETED, artifacts=2)
    folder = checkpoints(clean_settings, str(run_id), ["a", "b"])
    code, status, _ = fanout(webhook, prefect_api, "status", str(run_id))
    assert (code, status["runtimeStatus"], status["instanceId"]) == (0, "Completed", str(run_id))
    code, report, stderr = fanout(webhook, prefect_api, "purge", str(run_id))
    assert code == 0, stderr
    assert {name: report[name] for name in ("runsDeleted", "artifactsDeleted", "checkpointsDeleted")} == {
        "runsDeleted": 1,
        "artifactsDeleted": 2,
        "checkpointsDeleted": 2,
    }
    assert left_on_prefect(run_id) == (False, 0) and not folder.exists()
    assert fanout(webhook, prefect_api, "status", str(run_id))[0] == 2


def test_list_filters_and_pages_through_the_cli(webhook: str, prefect_api: str, deployment_id: UUID) -> None:
    """`fanout list --prefix --status --top` pages with the token it prints on stderr."""
    prefix = f"pg-{uuid.uuid4().hex[:8]}"
    for number, state in enumerate([StateType.COMPLETED, StateType.FAILED, StateType.COMPLETED]):
        deployment_run(deployment_id, state, instance_id=f"{prefix}-{number}")
    code, first, stderr = fanout(
        webhook, prefect_api, "list", "--prefix", prefix, "--status", "Completed", "--top", "1"
    )
    assert code == 0 and [entry["instanceId"] for entry in first] == [f"{prefix}-2"]
    token = stderr.split("--continuation-token ")[1].split()[0]
    code, rest, _ = fanout(
        webhook, prefect_api, "list", "--prefix", prefix, "--status", "Completed", "--continuation-token", token
    )
    assert code == 0 and [entry["instanceId"] for entry in rest] == [f"{prefix}-0"]


def test_exit_codes_are_fanout_starts(webhook: str, prefect_api: str, deployment_id: UUID) -> None:
    """0 done; 2 for a conflict, an unknown instance or a bad filter (with the webhook's reason); 1 unreachable."""
    running = str(deployment_run(deployment_id, StateType.RUNNING))
    code, _, stderr = fanout(webhook, prefect_api, "purge", running)
    assert code == 2 and "409" in stderr and "Running" in stderr
    assert fanout(webhook, prefect_api, "terminate", running)[0] == 0
    code, _, stderr = fanout(webhook, prefect_api, "status", "no-such-instance")
    assert code == 2 and "404" in stderr
    code, _, stderr = fanout(webhook, prefect_api, "list", "--status", "Done")
    assert code == 2 and "unknown runtimeStatus 'Done'" in stderr
    closed = f"http://{LOOPBACK}:{free_port()}"
    code, _, stderr = fanout(closed, prefect_api, "status", running)
    assert code == 1 and "cannot reach the webhook" in stderr

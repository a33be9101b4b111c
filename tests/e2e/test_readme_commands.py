"""The shell commands of the README and the how-to guides, run as written (bash, curl) against a real stack."""

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
from fanout.localstack.stack import LocalStack
from tests.conftest import REPO_ROOT
from tests.support.markdown import DOCS, README, section_blocks
from tests.support.stacks import wait_for

pytestmark = pytest.mark.e2e

DEPLOY = DOCS / "how-to" / "deploy.md"
HTTP_API = DOCS / "how-to" / "http-api.md"


def bash(script: str, stack: LocalStack, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    environment = stack.client_env(PATH=f"{bin_dir}:{os.environ['PATH']}", **env)
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


def webhook_env(stack: LocalStack) -> dict[str, str]:
    """What `fanout up` leaves in `.fanout/` for a reader's shell, given here as the variables the
    commands read first."""
    return {"FANOUT_URL": stack.webhook_url, "FANOUT_WEBHOOK_TOKEN": stack.token}


def runs_with(prefect_api: httpx.Client, request: dict[str, Any]) -> list[dict[str, Any]]:
    runs = prefect_api.post("/flow_runs/filter", json={"limit": 200}).json()
    return [run for run in runs if run["parameters"].get("request") == request]


def test_readme_quick_start_lines_are_the_ones_tested() -> None:
    """The README's `fanout run`, `fanout up` and `fanout start` lines are those the e2e tiers exercise."""
    run, up, _ = section_blocks(README, "Quick start")
    assert run.strip() == ".venv/bin/fanout run"
    assert up.strip() == ".venv/bin/fanout up"
    assert "`.venv/bin/fanout start --count 200 --wait`" in README.read_text()


def test_readme_quick_start_curl_polls_to_completed(stack: LocalStack, worker: Child) -> None:
    """The README's curl start and poll loop ends with the run's Completed status and its output."""
    start_and_poll = section_blocks(README, "Quick start")[2]
    done = bash(start_and_poll, stack, **webhook_env(stack))
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"runtimeStatus":"Completed"' in done.stdout.replace(" ", "")
    assert "Processed item-20" in done.stdout


def test_deploy_commands(stack: LocalStack) -> None:
    """`prefect work-pool create` and `prefect deploy --all --no-prompt` from the guide register the deployment."""
    setup = section_blocks(DEPLOY, "Register and serve")[0]
    commands = [line for line in setup.splitlines() if line.strip() and "worker start" not in line]
    done = bash("\n".join(commands), stack)
    assert done.returncode == 0, done.stdout + done.stderr
    deployment = httpx.get(
        f"{stack.api_url}/deployments/name/fan-out-fan-in/default", headers=stack.api_headers(), timeout=30
    ).json()
    assert deployment["work_pool_name"] == "fanout"
    worker_line = next(line for line in setup.splitlines() if "worker start" in line)
    # the stack adds only local flags to this line
    assert worker_line.strip() == "prefect worker start --pool fanout --type fanout-warm"


def test_deployment_run_and_event_commands_create_runs(
    stack: LocalStack, webhook: httpx.Client, prefect_api: httpx.Client
) -> None:
    """The guide's `prefect deployment run` line and its events-API curl each start a run of five items."""
    (run_line,) = section_blocks(DEPLOY, "Start a run")
    (event_curl,) = section_blocks(DEPLOY, "Start a run from an event")
    before = len(runs_with(prefect_api, {"count": 5}))
    done = bash(run_line, stack)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(runs_with(prefect_api, {"count": 5})) == before + 1
    done = bash(event_curl, stack)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: len(runs_with(prefect_api, {"count": 5})) == before + 2, timeout=120, what="the event's run")


def test_webhook_curl_examples(stack: LocalStack, webhook: httpx.Client) -> None:
    """The HTTP API guide's curl examples start, read, terminate, restart and purge an instance."""
    start, manage, _ = section_blocks(HTTP_API, "Start, read, manage")
    done = bash(start + manage, stack, **webhook_env(stack))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("HTTP/1.1 202") == 2  # the start, and the status of a run not yet finished
    assert '"statusQueryGetUri"' in done.stdout and '"customStatus"' in done.stdout
    assert '{"instancesDeleted":1,' in done.stdout  # the purge's report
    assert "HTTP/1.1 200" in done.stdout  # the list


def test_webhook_cli_examples(stack: LocalStack, webhook: httpx.Client) -> None:
    """The HTTP API guide's `fanout` lines start, read, list, terminate and purge an instance."""
    cli = section_blocks(HTTP_API, "Start, read, manage")[2]
    done = bash(cli, stack, **webhook_env(stack))
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"runtimeStatus"' in done.stdout and '"instancesDeleted": 1' in done.stdout


def test_the_held_status_curl_answers_once_the_run_is_finished(
    stack: LocalStack, worker: Child, webhook: httpx.Client
) -> None:
    """The HTTP API guide's `?wait=` line, sent right after a start, answers the finished run's output."""
    (held,) = section_blocks(HTTP_API, "The status document")
    instance = webhook.post("/api/start-fanout", json={"count": 2}).json()["id"]
    done = bash(held, stack, URL=stack.webhook_url, TOKEN=stack.token, ID=instance)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["output"] == ["Processed item-1", "Processed item-2"]

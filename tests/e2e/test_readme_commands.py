"""The commands in the README's deploy and webhook sections, run as written (bash, curl) against a real stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from fanout.localstack.stack import LocalStack
from tests.conftest import REPO_ROOT
from tests.support.stacks import wait_for

pytestmark = pytest.mark.e2e

README = (REPO_ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The README text under `## <title>`, up to the next `## ` heading."""
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:] if end == -1 else README[start:end]


def sh_blocks(title: str) -> list[str]:
    """The ```sh code blocks of a README section."""
    return re.findall(r"```sh\n(.*?)```", section(title), flags=re.S)


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


def runs_with(prefect_api: httpx.Client, request: dict[str, Any]) -> list[dict[str, Any]]:
    runs = prefect_api.post("/flow_runs/filter", json={"limit": 200}).json()
    return [run for run in runs if run["parameters"].get("request") == request]


def test_deploy_commands(stack: LocalStack) -> None:
    """`prefect work-pool create` and `prefect deploy --all --no-prompt` from the README register the deployment."""
    setup = sh_blocks("Deploying with Prefect")[0]
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
    """The README's `prefect deployment run` line and its events-API curl each start a run of five items."""
    run_line, event_line = sh_blocks("Deploying with Prefect")[1:3]
    before = len(runs_with(prefect_api, {"count": 5}))
    done = bash(run_line, stack)
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(runs_with(prefect_api, {"count": 5})) == before + 1
    done = bash(event_line, stack)
    assert done.returncode == 0, done.stdout + done.stderr
    wait_for(lambda: len(runs_with(prefect_api, {"count": 5})) == before + 2, timeout=120, what="the event's run")


def test_webhook_curl_examples(stack: LocalStack, webhook: httpx.Client) -> None:
    """The webhook section's curl examples start, read, terminate, restart and purge an instance."""
    start, manage, _ = sh_blocks("The webhook and status API")
    done = bash(start + manage, stack, FANOUT_URL=stack.webhook_url, FANOUT_WEBHOOK_TOKEN=stack.token)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("HTTP/1.1 202") == 2  # the start, and the status of a run not yet finished
    assert '"statusQueryGetUri"' in done.stdout and '"customStatus"' in done.stdout
    assert '{"instancesDeleted":1,' in done.stdout  # the purge's report
    assert "HTTP/1.1 200" in done.stdout  # the list


def test_webhook_cli_examples(stack: LocalStack, webhook: httpx.Client) -> None:
    """The webhook section's `fanout` lines start, read, list, terminate and purge an instance."""
    cli = sh_blocks("The webhook and status API")[2]
    done = bash(cli, stack, FANOUT_URL=stack.webhook_url, FANOUT_WEBHOOK_TOKEN=stack.token)
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"runtimeStatus"' in done.stdout and '"instancesDeleted": 1' in done.stdout


def test_up_and_start_commands_are_the_ones_tested() -> None:
    """The README's `fanout up` and `fanout start` lines use options tests/e2e/test_up.py exercises."""
    up, start = sh_blocks("The local stack: `fanout up`")
    assert up.strip() == ".venv/bin/fanout up"
    assert start.strip() == ".venv/bin/fanout start --count 200 --wait"

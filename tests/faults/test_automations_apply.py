"""`fanout automations apply` against a real server that `fanout up`'s stack already set up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fanout.service.automations import GIVE_UP, HEARTBEATS, RETRY, SILENT
from tests.conftest import REPO_ROOT
from tests.support.fault_stack import FaultStack

pytestmark = pytest.mark.faults


def apply(stack: FaultStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.local.client_env(), "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "fanout.cli.cli", "automations", "apply", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=120,
    )


def test_apply_is_idempotent_and_scoped_to_the_deployment(stack: FaultStack) -> None:
    """Applying again updates the four automations in place, each scoped to fanout's deployments."""
    done = apply(stack)
    assert done.returncode == 0, done.stderr
    assert [line.split()[0] for line in done.stdout.splitlines()[:4]] == ["updated"] * 4
    with stack.client() as client:
        for name in (SILENT, HEARTBEATS, RETRY, GIVE_UP):
            (automation,) = client.read_automations_by_name(name)
            scoped = automation.trigger.match_related["prefect.resource.id"]
            assert f"prefect.deployment.{stack.deployment_id}" in scoped  # and prefect.yaml's other pipelines
            assert all(resource.startswith("prefect.deployment.") for resource in scoped)


def test_apply_names_a_missing_deployment(stack: FaultStack) -> None:
    """Asking for a deployment that does not exist exits 2 with a message, changing nothing."""
    done = apply(stack, "--deployment", "fan-out-fan-in/nope")
    assert done.returncode == 2 and "no deployment" in done.stderr

"""What `fanout up` deploys: prefect.yaml's deployments, from the installed package (src/fanout/localstack/deploy.py)."""

from __future__ import annotations

from typing import Any

import yaml

from fanout.localstack.deploy import DEPLOYMENTS, runner_deployment
from tests.conftest import REPO_ROOT

SEED_ENTRYPOINT = "flows/fanout.py:fan_out_fan_in"


def yaml_deployments() -> list[dict[str, Any]]:
    """prefect.yaml's deployments of the seed's flow (the examples in flows/ live outside the package)."""
    declared = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    return [spec for spec in declared if spec["entrypoint"] == SEED_ENTRYPOINT]


def test_the_stack_deploys_what_prefect_yaml_declares_but_the_entrypoint() -> None:
    """Every field of prefect.yaml's deployments but the file-path entrypoint is what `fanout up` registers."""
    declared = [{name: value for name, value in spec.items() if name != "entrypoint"} for spec in yaml_deployments()]
    assert declared == DEPLOYMENTS


def test_prefect_yaml_and_the_stack_run_the_same_flow() -> None:
    """prefect.yaml's file entrypoint and the stack's module entrypoint name the same flow function."""
    entrypoints = {spec["entrypoint"] for spec in yaml_deployments()}
    assert entrypoints == {SEED_ENTRYPOINT}
    assert {runner_deployment(spec).entrypoint for spec in DEPLOYMENTS} == {"fanout.seed.fan_out_fan_in"}


def test_the_stack_deployment_needs_no_source_tree() -> None:
    """A deployment the stack registers has no path and no storage: workers import the flow by module."""
    deployment = runner_deployment(DEPLOYMENTS[0])
    assert deployment.storage is None and deployment._path is None


def test_the_seed_deployment_starts_on_a_fanout_start_event() -> None:
    """The seed's deployment keeps prefect.yaml's event trigger, with the payload as the request."""
    (trigger,) = runner_deployment(DEPLOYMENTS[0]).triggers
    assert trigger.expect == {"fanout.start"} and trigger.parameters == {"request": "{{ event.payload }}"}

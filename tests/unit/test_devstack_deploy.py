"""What `fanout up` deploys: a project's prefect.yaml, else the seed's deployment from the installed package
(src/fanout/localstack/deploy.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fanout.localstack.deploy import (
    DEPLOYMENTS,
    BadProject,
    deploy_argv,
    project_file,
    project_pools,
    runner_deployment,
)
from tests.conftest import REPO_ROOT

SEED_ENTRYPOINT = "flows/fan_out_fan_in.py:fan_out_fan_in"


def yaml_deployments() -> list[dict[str, Any]]:
    """prefect.yaml's deployments of the seed's flow (the examples in flows/ live outside the package)."""
    declared = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    return [spec for spec in declared if spec["entrypoint"] == SEED_ENTRYPOINT]


def test_the_stack_deploys_the_seed_as_prefect_yaml_declares_it_but_the_entrypoint() -> None:
    """Every field of prefect.yaml's seed deployment but the file-path entrypoint is what `fanout up` registers."""
    (seed,) = [spec for spec in yaml_deployments() if spec["name"] == "default"]
    assert [{name: value for name, value in seed.items() if name != "entrypoint"}] == DEPLOYMENTS


def test_prefect_yaml_and_the_stack_run_the_same_flow() -> None:
    """prefect.yaml's file entrypoint and the stack's module entrypoint name the same flow function."""
    entrypoints = {spec["entrypoint"] for spec in yaml_deployments()}
    assert entrypoints == {SEED_ENTRYPOINT}
    assert {runner_deployment(spec).entrypoint for spec in DEPLOYMENTS} == {"fanout.seed.fan_out_fan_in"}


def test_the_package_deploys_no_pipeline_whose_module_it_does_not_install() -> None:
    """`http-enrich` imports `flows.http_enrich`, which only a checkout has: prefect.yaml deploys it, the package does not."""
    assert [spec["name"] for spec in DEPLOYMENTS] == ["default"]
    assert "http-enrich" in {spec["name"] for spec in yaml_deployments()}


def test_the_stack_deployment_needs_no_source_tree() -> None:
    """A deployment the stack registers has no path and no storage: workers import the flow by module."""
    deployment = runner_deployment(DEPLOYMENTS[0])
    assert deployment.storage is None and deployment._path is None


def test_the_seed_deployment_starts_on_a_fanout_start_event() -> None:
    """The seed's deployment keeps prefect.yaml's event trigger, with the payload as the request."""
    (trigger,) = runner_deployment(DEPLOYMENTS[0]).triggers
    assert trigger.expect == {"fanout.start"} and trigger.parameters == {"request": "{{ event.payload }}"}


def test_a_folder_with_a_prefect_yaml_is_a_project_and_its_pools_are_the_ones_it_names(tmp_path: Path) -> None:
    """The pools come from the deployments' `work_pool` names, each once, in order of first mention."""
    assert project_file(tmp_path) is None
    (tmp_path / "prefect.yaml").write_text(
        "deployments:\n"
        "  - {name: a, entrypoint: flows/a.py:a, work_pool: {name: mine}}\n"
        "  - {name: b, entrypoint: flows/b.py:b, work_pool: {name: other, job_variables: {env: {X: '1'}}}}\n"
        "  - {name: c, entrypoint: flows/c.py:c, work_pool: {name: mine}}\n"
    )
    assert project_file(tmp_path) == tmp_path / "prefect.yaml"
    assert project_pools(tmp_path / "prefect.yaml") == ["mine", "other"]
    assert project_pools(REPO_ROOT / "prefect.yaml") == ["fanout"]


@pytest.mark.parametrize(
    ("text", "why"),
    [("deployments: []\n", "declares no deployments"), ("deployments:\n  - {name: a}\n", "names no work pool")],
)
def test_a_prefect_yaml_that_cannot_be_deployed_is_refused_saying_why(tmp_path: Path, text: str, why: str) -> None:
    """No deployments, or one without a work pool, is refused before anything starts."""
    (tmp_path / "prefect.yaml").write_text(text)
    with pytest.raises(BadProject, match=why):
        project_pools(tmp_path / "prefect.yaml")


def test_a_project_is_deployed_by_prefect_deploy_itself() -> None:
    """Prefect's own `prefect deploy` reads the project, every deployment or those named, without prompts."""
    assert deploy_argv("py") == ["py", "-m", "prefect", "deploy", "--all", "--no-prompt"]
    assert deploy_argv("py", ["a"]) == ["py", "-m", "prefect", "deploy", "--name", "a", "--no-prompt"]


def test_every_prefect_yaml_entrypoint_loads_as_prefect_loads_a_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect loads an entrypoint's file with its folder on sys.path: no file there may shadow `fanout`."""
    from prefect.flows import Flow, load_flow_from_entrypoint

    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))
    declared = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    for entrypoint in {spec["entrypoint"] for spec in declared}:
        assert isinstance(load_flow_from_entrypoint(entrypoint), Flow)

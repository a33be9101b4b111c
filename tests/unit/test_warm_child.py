"""What a warm flow-run process takes from the forkserver instead of loading again."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from uuid import uuid4

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.utilities.templating import apply_values
from prefect.workers.process import ProcessWorker

import fanout.seed
from fanout.worker.warm_child import SET_WORKING_DIRECTORY, _preloaded_module, preloaded_flow, prepend_python_path
from fanout.worker.warm_spare import DeploymentSource
from fanout.worker.warm_worker import WarmJobConfiguration, run_environment

ROOT = Path(fanout.seed.__file__).resolve().parents[1]


def test_a_run_environment_leaves_out_the_prefect_settings_the_forkserver_already_has() -> None:
    """The worker's own settings, as Prefect spells them, are not passed again; the run's own variables are."""
    env = {"PREFECT_API_URL": "http://api", "PREFECT_LOGGING_LEVEL": "DEBUG", "FANOUT_PROCESSOR": "m:f", "UNSET": None}
    inherited = {"PREFECT_API_URL": "http://api", "PREFECT_LOGGING_LEVEL": "INFO"}
    assert run_environment(env, inherited) == {"PREFECT_LOGGING_LEVEL": "DEBUG", "FANOUT_PROCESSOR": "m:f"}


def test_a_module_path_entrypoint_is_the_preloaded_module() -> None:
    """`fanout up` registers `fanout.seed.fan_out_fan_in`: the flow comes from the module already imported."""
    assert _preloaded_module("fanout.seed.fan_out_fan_in", Path("/elsewhere")) == (fanout.seed, "fan_out_fan_in")


def test_a_file_entrypoint_is_the_preloaded_module_only_when_it_is_that_file() -> None:
    """A file path names the preloaded module only from the folder that holds that very file."""
    assert _preloaded_module("fanout/seed.py:fan_out_fan_in", ROOT) == (fanout.seed, "fan_out_fan_in")
    assert _preloaded_module("fanout/seed.py:fan_out_fan_in", ROOT / "elsewhere")[0] is None


class NoReads:
    """A client that must not be used: the deployment came with the run."""

    def read_deployment(self, deployment_id: object) -> None:
        raise AssertionError("the deployment was read again")


def test_the_flow_comes_from_the_deployment_the_worker_passed_without_reading_it_again() -> None:
    """Given the deployment's entrypoint and pull steps, the preloaded flow is taken with no API call."""
    flow_run = FlowRun(id=uuid4(), flow_id=uuid4(), name="run", deployment_id=uuid4())
    steps = [{SET_WORKING_DIRECTORY: {"directory": str(ROOT)}}]
    known = DeploymentSource("fanout.seed.fan_out_fan_in", steps)
    cwd = os.getcwd()
    try:
        assert preloaded_flow(flow_run, NoReads(), known) is fanout.seed.fan_out_fan_in  # type: ignore[arg-type]
    finally:
        os.chdir(cwd)


def test_the_job_configuration_keeps_the_deployment_prefect_prepares_it_with() -> None:
    """Prefect hands the deployment it read to `prepare_for_flow_run`; the configuration keeps what the run needs."""
    deployment = DeploymentResponse(
        id=uuid4(), name="default", flow_id=uuid4(), entrypoint="fanout.seed.fan_out_fan_in", pull_steps=[]
    )
    flow_run = FlowRun(id=uuid4(), flow_id=deployment.flow_id, name="run", deployment_id=deployment.id)
    configuration = WarmJobConfiguration()

    configuration.prepare_for_flow_run(flow_run=flow_run, deployment=deployment, flow=None, worker_name="w")

    assert configuration.deployment_source == DeploymentSource("fanout.seed.fan_out_fan_in", [])


def test_a_run_python_path_comes_first_on_sys_path_and_its_modules_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deployment's `PYTHONPATH` (relative to the run's folder) reaches imports in a process forked without it."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "mine_only_here.py").write_text("VALUE = 7\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    added = prepend_python_path(f"lib{os.pathsep}{tmp_path / 'lib'}")
    assert added == [str(tmp_path / "lib")] and sys.path[0] == str(tmp_path / "lib")
    assert importlib.import_module("mine_only_here").VALUE == 7
    sys.modules.pop("mine_only_here")


@pytest.mark.parametrize(
    ("command", "own"), [(None, None), ("uv run python -m prefect.engine", "uv run python -m prefect.engine")]
)
def test_only_a_command_the_deployment_sets_leaves_the_warm_processes(command: str | None, own: str | None) -> None:
    """A process pool's template with no `command` runs warm; a `command` job variable runs as the process worker would."""
    template = ProcessWorker.get_default_base_job_template()["job_configuration"]
    rendered = apply_values(template, {"command": command} if command else {}, remove_notset=True)
    configuration = WarmJobConfiguration(**rendered)
    flow_run = FlowRun(id=uuid4(), flow_id=uuid4(), name="run")
    configuration.prepare_for_flow_run(flow_run=flow_run, deployment=None, flow=None, worker_name="w")
    assert configuration.own_command == own

"""What a warm flow-run process takes from the forkserver instead of loading again."""

from __future__ import annotations

from pathlib import Path

import flows.fanout
from deployments.warm_child import _preloaded_module
from deployments.warm_worker import run_environment

ROOT = Path(flows.fanout.__file__).resolve().parents[1]


def test_a_run_environment_leaves_out_the_prefect_settings_the_forkserver_already_has() -> None:
    """The worker's own settings, as Prefect spells them, are not passed again; the run's own variables are."""
    env = {"PREFECT_API_URL": "http://api", "PREFECT_LOGGING_LEVEL": "DEBUG", "FANOUT_PROCESSOR": "m:f", "UNSET": None}
    inherited = {"PREFECT_API_URL": "http://api", "PREFECT_LOGGING_LEVEL": "INFO"}
    assert run_environment(env, inherited) == {"PREFECT_LOGGING_LEVEL": "DEBUG", "FANOUT_PROCESSOR": "m:f"}


def test_a_module_path_entrypoint_is_the_preloaded_module() -> None:
    """`fanout up` registers `flows.fanout.fan_out_fan_in`: the flow comes from the module already imported."""
    assert _preloaded_module("flows.fanout.fan_out_fan_in", Path("/elsewhere")) == (flows.fanout, "fan_out_fan_in")


def test_a_file_entrypoint_is_the_preloaded_module_only_when_it_is_that_file() -> None:
    """A file path names the preloaded module only from the folder that holds that very file."""
    assert _preloaded_module("flows/fanout.py:fan_out_fan_in", ROOT) == (flows.fanout, "fan_out_fan_in")
    assert _preloaded_module("flows/fanout.py:fan_out_fan_in", ROOT / "elsewhere")[0] is None

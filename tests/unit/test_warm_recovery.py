"""The warm worker's decisions about an ended flow-run process, without a server."""

from __future__ import annotations

import json
import os
from pathlib import Path

from deployments.local_server import read_state, server_folder
from deployments.warm_processes import preload_modules
from deployments.warm_recovery import describe_exit, retry_allowed


def test_a_crash_is_retried_while_the_run_count_is_within_the_cap() -> None:
    """Attempts 1..max may be followed by another; the attempt after the last retry may not."""
    assert [retry_allowed(count, 3) for count in (1, 2, 3, 4)] == [True, True, True, False]


def test_a_run_that_died_before_running_is_not_retried() -> None:
    """run_count 0 (never reached Running) is not retried: nothing would bound the loop."""
    assert not retry_allowed(0, 3)


def test_no_retries_configured_means_none() -> None:
    """FANOUT_MAX_AUTO_RETRIES=0 retries nothing."""
    assert not retry_allowed(1, 0)


def test_an_exit_by_signal_is_named() -> None:
    """multiprocessing reports a signal as a negative exit code; the message names the signal."""
    assert describe_exit(-9) == "signal SIGKILL"
    assert describe_exit(1) == "exit code 1"


def test_the_forkserver_preloads_the_flow_and_the_processor_module() -> None:
    """The processor's module is imported up front along with the engine entry and the flow."""
    modules = preload_modules("pipelines.http_enrich:enrich")
    assert modules[:2] == ["deployments.warm_child", "flows.fanout"]
    assert "pipelines.http_enrich" in modules


def test_a_recorded_server_whose_pid_is_not_a_prefect_server_is_ignored(tmp_path: Path) -> None:
    """A state file naming a pid that is no Prefect server (here: this test) is not trusted."""
    folder = server_folder(tmp_path)
    folder.mkdir(parents=True)
    (folder / "server.json").write_text(json.dumps({"pid": os.getpid(), "port": 1, "home": str(folder)}))
    assert read_state(tmp_path) is None

"""The same flow on Dask (`FANOUT_TASK_RUNNER=dask`, a `distributed` LocalCluster): results and resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.processors import executed

pytest.importorskip("prefect_dask", reason="the dask extra is not installed")

pytestmark = [
    pytest.mark.slow,
    # A LocalCluster's scheduler serves HTTP on 8787 even without a dashboard, or on another port when a
    # cluster of another test process holds it: a warning, not a failure.
    pytest.mark.filterwarnings("ignore:Port 8787 is already in use:UserWarning"),
]


@pytest.fixture
def on_dask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run task runs on a LocalCluster started by the flow, of one worker process (each costs an interpreter
    and Prefect's import; runs across several Dask workers are the multi-host rehearsal's)."""
    monkeypatch.setenv("FANOUT_TASK_RUNNER", "dask")
    monkeypatch.setenv("FANOUT_DASK_WORKERS", "1")
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "4")


def test_dask_runs_the_seed(on_dask: None, cli_here) -> None:
    """`fanout run` on Dask returns the seed's five results in order."""
    done = cli_here("run")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [f"Processed item-{i}" for i in range(1, 6)]


def test_dask_batches_resume_from_per_item_checkpoints(
    on_dask: None, monkeypatch: pytest.MonkeyPatch, cli_here, execution_log: Path
) -> None:
    """Batches on Dask checkpoint each item; rerunning the instance executes only the item that failed."""
    monkeypatch.setenv("FANOUT_BATCH_SIZE", "10")
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-13")
    first = cli_here("run", "--count", "40", "--instance-id", "dask-resume")
    assert first.returncode == 1, first.stderr
    assert len(executed(execution_log)) == 40
    for path in execution_log.iterdir():
        path.unlink()

    monkeypatch.delenv("FANOUT_TEST_FAIL")
    second = cli_here("run", "--count", "40", "--instance-id", "dask-resume")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout) == [f"Processed item-{i}" for i in range(1, 41)]
    assert executed(execution_log) == ["item-13"]


def test_a_run_crashed_on_threads_resumes_on_dask(
    monkeypatch: pytest.MonkeyPatch, cli, cli_here, execution_log: Path
) -> None:
    """Checkpoints are the same records on either runner: a thread run's crash resumes on Dask."""
    monkeypatch.setenv("FANOUT_BATCH_SIZE", "10")
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "1")
    monkeypatch.setenv("FANOUT_TEST_CRASH_AT", "item-25")
    assert cli("run", "--count", "40", "--instance-id", "thread-then-dask").returncode == 17
    for path in execution_log.iterdir():
        if path.name != "crashed":
            path.unlink()

    monkeypatch.setenv("FANOUT_TASK_RUNNER", "dask")
    monkeypatch.setenv("FANOUT_DASK_WORKERS", "1")
    resumed = cli_here("run", "--count", "40", "--instance-id", "thread-then-dask")
    assert resumed.returncode == 0, resumed.stderr
    assert executed(execution_log) == sorted(f"item-{i}" for i in range(25, 41))

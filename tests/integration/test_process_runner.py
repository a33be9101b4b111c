"""The flow on worker processes (`FANOUT_TASK_RUNNER=process`): results, a dead worker, refusals, resume."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.filesystems import LocalFileSystem

from fanout.core.errors import ProcessorNotFound
from fanout.engine.item_processes import ItemProcesses
from fanout.inputs.request import FanoutRequest
from fanout.seed import fan_out_fan_in
from fanout.storage.checkpoints import CheckpointStore
from tests.support.processors import executed, in_flight_timeline

SCRIPTED = "tests.support.processors:scripted"


@pytest.fixture
def on_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run items in two worker processes, in batches of ten."""
    monkeypatch.setenv("FANOUT_TASK_RUNNER", "process")
    monkeypatch.setenv("FANOUT_PROCESSES", "2")
    monkeypatch.setenv("FANOUT_BATCH_SIZE", "10")


def test_the_seed_runs_on_worker_processes(on_processes: None, cli_here) -> None:
    """`fanout run` on worker processes returns the seed's results in order."""
    done = cli_here("run", "--count", "30")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [f"Processed item-{i}" for i in range(1, 31)]


def test_a_worker_killed_mid_item_costs_only_that_item_a_second_run(
    on_processes: None, monkeypatch: pytest.MonkeyPatch, cli_here, execution_log: Path
) -> None:
    """A worker process dies at item-13: the run completes, and only item-13 ran twice."""
    monkeypatch.setenv("FANOUT_TEST_CRASH_AT", "item-13")
    done = cli_here("run", "--count", "40")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [f"Processed item-{i}" for i in range(1, 41)]
    assert [item for item, runs in Counter(executed(execution_log)).items() if runs > 1] == ["item-13"]


def test_a_rerun_on_worker_processes_executes_only_what_did_not_finish(
    on_processes: None, monkeypatch: pytest.MonkeyPatch, cli_here, execution_log: Path
) -> None:
    """Checkpoints written for items run in workers let a rerun of the instance execute only the failed item."""
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-13")
    first = cli_here("run", "--count", "40", "--instance-id", "process-resume")
    assert first.returncode == 1, first.stderr
    for path in execution_log.iterdir():
        path.unlink()

    monkeypatch.delenv("FANOUT_TEST_FAIL")
    second = cli_here("run", "--count", "40", "--instance-id", "process-resume")
    assert second.returncode == 0, second.stderr
    assert executed(execution_log) == ["item-13"]


def test_a_flow_killed_on_worker_processes_resumes_from_its_checkpoints(
    on_processes: None,
    monkeypatch: pytest.MonkeyPatch,
    cli,
    cli_here,
    execution_log: Path,
    clean_settings: Path,
) -> None:
    """The flow process dies mid-run: the rerun executes exactly the items that had no checkpoint."""
    monkeypatch.setenv("FANOUT_TEST_KILL_FLOW_AT", "item-25")
    monkeypatch.setenv("FANOUT_TEST_SLEEP", "0.02")
    assert cli("run", "--count", "40", "--instance-id", "process-crash").returncode != 0
    items = [f"item-{i}" for i in range(1, 41)]
    store = CheckpointStore(LocalFileSystem(basepath=str(clean_settings)), "process-crash", SCRIPTED)
    checkpointed = set(store.load(items))
    assert "item-25" not in checkpointed and len(checkpointed) >= 10
    for path in execution_log.iterdir():
        path.unlink()

    monkeypatch.delenv("FANOUT_TEST_KILL_FLOW_AT")
    resumed = cli_here("run", "--count", "40", "--instance-id", "process-crash")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == [f"Processed {item}" for item in items]
    assert executed(execution_log) == sorted(set(items) - checkpointed)


def test_a_processor_that_does_not_import_in_a_worker_is_refused_before_any_item_runs() -> None:
    """A module that fails to import in a fresh worker process refuses the run with the import error."""
    with (
        pytest.raises(ProcessorNotFound, match=r"cannot run in a worker process: .*only in the flow"),
        ItemProcesses("tests.support.flow_only:process", 1, start_method="spawn"),
    ):
        pass


def test_a_global_limit_caps_items_across_worker_processes(
    on_processes: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Two worker processes under a global limit of one slot never run two items at once."""
    name = f"items-{uuid.uuid4().hex[:8]}"
    timeline = tmp_path / "in-flight"
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.processors:fleet_recorded")
    monkeypatch.setenv("FANOUT_TEST_RECORDER", str(timeline))
    monkeypatch.setenv("FANOUT_TEST_SLEEP", "0.05")
    monkeypatch.setenv("FANOUT_CONCURRENCY_LIMIT", name)
    monkeypatch.setenv("FANOUT_SLOT_HOLD_SECONDS", "0.1")
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
        try:
            assert fan_out_fan_in(FanoutRequest(count=20)) == [f"Processed item-{i}" for i in range(1, 21)]
        finally:
            client.delete_global_concurrency_limit_by_name(name)
    assert max(in_flight for _, in_flight in in_flight_timeline(timeline)) == 1

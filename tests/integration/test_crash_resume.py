"""A host dies mid-run; the same instance resumes from its checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem

from fanout.storage.checkpoints import CheckpointStore
from tests.support.processors import executed

PROCESSOR = "tests.support.processors:scripted"


def checkpointed(results: Path, instance: str, count: int) -> int:
    """Items with a whole checkpoint record; one half-written as the process died does not count."""
    store = CheckpointStore(LocalFileSystem(basepath=str(results)), instance, PROCESSOR)
    return len(store.load([f"item-{i}" for i in range(1, count + 1)]))


@pytest.mark.parametrize("count, batch", [(12, "1"), (150, "10")], ids=["per-item", "batched"])
def test_killed_run_resumes_with_only_unfinished_items(
    monkeypatch: pytest.MonkeyPatch,
    cli,
    cli_here,
    execution_log: Path,
    clean_settings: Path,
    count: int,
    batch: str,
) -> None:
    """After os._exit mid-item, rerunning the instance executes only what had not finished."""
    monkeypatch.setenv("FANOUT_TEST_CRASH_AT", "item-7")
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "2")
    monkeypatch.setenv("FANOUT_BATCH_SIZE", batch)
    crashed = cli("run", "--count", str(count), "--instance-id", "crashy")
    assert crashed.returncode == 17, crashed.stderr
    finished_before = checkpointed(clean_settings, "crashy", count)
    first_attempts = set(executed(execution_log))
    assert 0 < finished_before < count

    for path in execution_log.iterdir():
        if path.name != "crashed":
            path.unlink()
    monkeypatch.delenv("FANOUT_TEST_CRASH_AT")  # the rerun runs in this process
    resumed = cli_here("run", "--count", str(count), "--instance-id", "crashy")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == [f"Processed item-{i}" for i in range(1, count + 1)]
    rerun = executed(execution_log)
    assert len(rerun) == count - finished_before
    assert "item-7" in rerun and len(first_attempts - set(rerun)) == finished_before


def test_another_instance_reuses_nothing_after_a_crash(
    monkeypatch: pytest.MonkeyPatch, cli, cli_here, execution_log: Path
) -> None:
    """A different instance id runs every item even when another instance has checkpoints."""
    monkeypatch.setenv("FANOUT_TEST_CRASH_AT", "item-4")
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "1")
    assert cli("run", "--count", "6", "--instance-id", "first").returncode == 17
    for path in execution_log.iterdir():
        if path.name != "crashed":
            path.unlink()
    monkeypatch.delenv("FANOUT_TEST_CRASH_AT")  # the other instance runs in this process
    assert cli_here("run", "--count", "6", "--instance-id", "second").returncode == 0
    assert len(executed(execution_log)) == 6


def test_a_crash_inside_a_batch_keeps_the_items_it_finished(
    monkeypatch: pytest.MonkeyPatch, cli, cli_here, execution_log: Path, clean_settings: Path
) -> None:
    """A host dying in the middle of a 50-item batch keeps that batch's finished items; none runs again."""
    monkeypatch.setenv("FANOUT_TEST_CRASH_AT", "item-30")
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "1")
    monkeypatch.setenv("FANOUT_BATCH_SIZE", "50")
    assert cli("run", "--count", "120", "--instance-id", "mid-batch").returncode == 17
    assert checkpointed(clean_settings, "mid-batch", 120) == 29

    for path in execution_log.iterdir():
        if path.name != "crashed":
            path.unlink()
    monkeypatch.delenv("FANOUT_TEST_CRASH_AT")  # the rerun runs in this process
    resumed = cli_here("run", "--count", "120", "--instance-id", "mid-batch")
    assert resumed.returncode == 0, resumed.stderr
    assert executed(execution_log) == sorted(f"item-{i}" for i in range(30, 121))

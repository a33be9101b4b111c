"""fanout's output record of a Completed run (src/fanout/storage/run_output.py): JSON, checksummed, never a wrong value."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem

from fanout.core.errors import CheckpointNotWritten
from fanout.storage import checkpoint_format
from fanout.storage.run_output import NoRunOutput, RunOutput, load_run_output, run_output_path, save_run_output


def storage(folder: Path) -> LocalFileSystem:
    return LocalFileSystem(basepath=str(folder))


def test_a_recorded_output_reads_back_in_order_with_its_failures(tmp_path: Path) -> None:
    """The output a run recorded is read back as it was, nulls included, with the failed items."""
    failures = [{"item": "item-2", "status": "failed", "attempts": 3, "error": "boom"}]
    save_run_output(storage(tmp_path), "inst", ["a", None, {"b": 1}], failures)
    assert load_run_output(storage(tmp_path), "inst") == RunOutput(["a", None, {"b": 1}], failures)


def test_a_record_from_before_failures_were_kept_has_its_output_and_unknown_failures(tmp_path: Path) -> None:
    """An earlier record holds the bare output list: it still reads, and its failures are None (not none)."""
    path = tmp_path / run_output_path("inst")
    path.parent.mkdir(parents=True)
    path.write_bytes(checkpoint_format.encode("run-output", ["a"]))
    assert load_run_output(storage(tmp_path), "inst") == RunOutput(["a"], None)


def test_the_record_is_fanouts_checkpoint_format_not_a_pickle(tmp_path: Path) -> None:
    """The record on disk is a version-1 checkpoint line of JSON."""
    save_run_output(storage(tmp_path), "inst", ["a"], [])
    data = (tmp_path / run_output_path("inst")).read_bytes()
    assert data.startswith(b"fanout-checkpoint/1 ")
    assert data.endswith(b'{"key":"run-output","result":{"failures":[],"output":["a"]}}\n')


def test_a_damaged_record_is_refused_not_returned(tmp_path: Path) -> None:
    """One changed byte in the record: NoRunOutput, never the changed value."""
    save_run_output(storage(tmp_path), "inst", ["Processed item-1"], [])
    path = tmp_path / run_output_path("inst")
    path.write_bytes(path.read_bytes().replace(b"item-1", b"item-7"))
    with pytest.raises(NoRunOutput, match="unreadable"):
        load_run_output(storage(tmp_path), "inst")


def test_an_instance_without_a_record_has_no_output(tmp_path: Path) -> None:
    """No record: NoRunOutput naming the instance."""
    with pytest.raises(NoRunOutput, match="inst"):
        load_run_output(storage(tmp_path), "inst")


def test_a_record_storage_refuses_fails_with_checkpoint_not_written(tmp_path: Path) -> None:
    """Storage that cannot take the record raises CheckpointNotWritten with the storage error."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(CheckpointNotWritten, match="output could not be recorded"):
        save_run_output(storage(blocker), "inst", ["a"], [])

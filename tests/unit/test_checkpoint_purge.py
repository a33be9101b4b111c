"""Purging an instance's records from result storage: local folders and fsspec blocks, counted."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem, RemoteFileSystem

from fanout.storage.checkpoint_purge import StorageDeleted, delete_instance, instance_root
from fanout.storage.checkpoints import CheckpointStore
from fanout.storage.instance_results import record_plan

PROCESSOR = "fanout.engine.processor:processed"


def checkpointed(storage: LocalFileSystem | RemoteFileSystem, instance_id: str, items: list[str]) -> None:
    """The records a finished run of `items` leaves: one per item, and the output record."""
    store = CheckpointStore(storage, instance_id, PROCESSOR)
    with store.journal("process_batch-0") as journal:
        for item in items:
            journal.append(item, f"Processed {item}")
    store.save_output(items, [f"Processed {item}" for item in items])


def test_a_local_instance_folder_is_deleted_and_its_records_counted(clean_settings: Path) -> None:
    """Every record, the output record, the plan: gone from disk, and each kind counted."""
    storage = LocalFileSystem(basepath=str(clean_settings))
    checkpointed(storage, "done-1", ["a", "b", "c"])
    record_plan(str(clean_settings), "done-1", PROCESSOR, ["a", "b", "c"])
    deleted = delete_instance(storage, "done-1")
    assert deleted is not None and (deleted.checkpoints, deleted.outputs) == (3, 1)
    assert deleted.files >= 4  # journal, output record, plan and its metadata
    assert not (clean_settings / "fanout" / "done-1").exists()


def test_other_instances_are_left_alone(clean_settings: Path) -> None:
    """Purging one instance leaves the records of another, even one whose id it prefixes."""
    storage = LocalFileSystem(basepath=str(clean_settings))
    checkpointed(storage, "job", ["a"])
    checkpointed(storage, "job-2", ["a"])
    delete_instance(storage, "job")
    assert CheckpointStore(storage, "job-2", PROCESSOR).load(["a"]) == {"a": "Processed a"}


def test_an_instance_with_no_records_deletes_nothing(clean_settings: Path) -> None:
    """Nothing stored: nothing deleted, and no error."""
    assert delete_instance(LocalFileSystem(basepath=str(clean_settings)), "never-ran") == StorageDeleted()


def test_records_on_a_remote_block_are_deleted_through_fsspec() -> None:
    """On a RemoteFileSystem block (journal segments), the instance's objects and records are counted and deleted."""
    storage = RemoteFileSystem(basepath=f"memory://fanout-purge-{uuid.uuid4().hex}")
    checkpointed(storage, "remote-1", ["a", "b"])
    assert delete_instance(storage, "remote-1") == StorageDeleted(checkpoints=2, outputs=1, files=2)
    assert CheckpointStore(storage, "remote-1", PROCESSOR).load(["a", "b"]) == {}


@pytest.mark.parametrize("instance_id", ["..", ".hidden", "a/../b", ""])
def test_an_id_that_could_name_another_folder_is_refused(instance_id: str) -> None:
    """Only instance ids are purged: nothing that could climb out of `fanout/`."""
    with pytest.raises(ValueError):
        instance_root(instance_id)

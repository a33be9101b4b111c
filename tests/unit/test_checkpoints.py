"""Checkpoints of one instance in Prefect result storage: journals on folders, objects elsewhere."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem, RemoteFileSystem
from prefect.settings import PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK, temporary_settings

from fanout.core.prefect_adapter import remote_block_files
from fanout.core.settings import get_settings
from fanout.storage import checkpoints as checkpoints_module
from fanout.storage.checkpoint_format import encode
from fanout.storage.checkpoints import (
    CheckpointStore,
    checkpoint_key,
    item_digest,
    journal_name,
    output_name,
    result_storage,
    storage_environment,
)

PROCESSOR = "fanout.engine.processor:processed"


def store(folder: Path, instance: str = "i1") -> CheckpointStore:
    return CheckpointStore(LocalFileSystem(basepath=str(folder)), instance, PROCESSOR)


def journaled(checkpoints: CheckpointStore, label: str, **results: object) -> Path:
    with checkpoints.journal(label) as journal:
        for key, result in results.items():
            journal.append(key, result)
    assert checkpoints.folder is not None
    return Path(checkpoints.folder) / journal_name(label)


def test_key_names_instance_and_processor_not_the_run() -> None:
    """The path is built from instance, processor and item only."""
    assert checkpoint_key("i1", PROCESSOR, "item-1").startswith("fanout/i1/fanout.engine.processor.processed/")


def test_items_with_path_characters_get_safe_keys() -> None:
    """An item containing slashes or dots cannot escape its instance's folder."""
    key = checkpoint_key("i1", PROCESSOR, "../../etc/passwd")
    assert key.count("/") == 3 and ".." not in key


def test_journaled_items_are_found_in_bulk(tmp_path: Path) -> None:
    """Items appended to journals come back with their results; others are absent."""
    checkpoints = store(tmp_path)
    journaled(checkpoints, "a..b", a={"n": 1}, b="B")
    journaled(checkpoints, "c", c=None)
    assert checkpoints.load(["a", "b", "c", "d"]) == {"a": {"n": 1}, "b": "B", "c": None}


def test_each_item_is_one_appended_line(tmp_path: Path) -> None:
    """A journal holds exactly one record line per finished item, in finishing order."""
    path = journaled(store(tmp_path), "batch", a=1, b=2)
    assert path.read_bytes() == encode("a", 1) + encode("b", 2)


def test_journals_and_folders_are_owner_only(tmp_path: Path) -> None:
    """Checkpoints are readable by their owner alone."""
    path = journaled(store(tmp_path), "batch", a=1)
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)


def test_another_instance_sees_nothing(tmp_path: Path) -> None:
    """Checkpoints of one instance are invisible to another."""
    journaled(store(tmp_path, "i1"), "x", a=1)
    assert store(tmp_path, "i2").load(["a"]) == {}


def test_a_task_run_reads_only_its_own_journal(tmp_path: Path) -> None:
    """Looking up one journal ignores the records of other task runs."""
    checkpoints = store(tmp_path)
    journaled(checkpoints, "first", a=1)
    journaled(checkpoints, "second", b=2)
    assert checkpoints.load(["a", "b"], journal=journal_name("second")) == {"b": 2}


def test_a_line_cut_short_by_a_crash_counts_as_unfinished(tmp_path: Path) -> None:
    """The piece of a line after the last newline is ignored; whole lines before it count."""
    path = journaled(store(tmp_path), "batch", a=1)
    with path.open("ab") as journal:
        journal.write(encode("b", 2)[:30])
    assert store(tmp_path).load(["a", "b"]) == {"a": 1}


def test_a_damaged_line_is_logged_and_its_item_runs_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A flipped byte costs only that item, and the log says why."""
    path = journaled(store(tmp_path), "batch", a="A", b="B", c="C")
    data = bytearray(path.read_bytes())
    data[data.index(b'"B"') + 1] ^= 0x01
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="fanout.storage.checkpoints"):
        assert store(tmp_path).load(["a", "b", "c"]) == {"a": "A", "c": "C"}
    assert "1 checkpoint record(s) skipped, damaged: checksum does not match" in caplog.text


def test_an_appended_checkpoint_that_cannot_be_written_raises(tmp_path: Path) -> None:
    """A storage error reaches the caller: the item must fail, not finish unrecorded."""
    blocker = tmp_path / "file"
    blocker.write_text("storage root is a file, so nothing can be created under it")
    with pytest.raises(OSError), store(blocker).journal("batch") as journal:
        journal.append("a", 1)


def test_finished_names_every_soundly_checkpointed_item(tmp_path: Path) -> None:
    """`finished()` gives the digests of items with a sound record, for watchers."""
    checkpoints = store(tmp_path)
    path = journaled(checkpoints, "x", a=1, b=2)
    with path.open("ab") as journal:
        journal.write(b"fanout-checkpoint/1 0000 {}\n")
    assert checkpoints.finished() == {item_digest("a"), item_digest("b")}


def remote_store() -> CheckpointStore:
    """A store on a remote block (fsspec's in-memory file system, as an object store): no appends there."""
    return CheckpointStore(RemoteFileSystem(basepath=f"memory://fanout-{uuid.uuid4().hex}"), "i1", PROCESSOR)


def remote_objects(remote: CheckpointStore) -> list[str]:
    """The names of the objects under the instance's prefix."""
    assert isinstance(remote.storage, RemoteFileSystem)
    _, _, paths = remote_block_files(remote.storage, remote.prefix)
    return [path.rsplit("/", 1)[-1] for path in paths]


def test_on_an_object_store_a_task_runs_records_go_in_one_segment() -> None:
    """Items finishing within half a second of each other cost one object between them, read back in bulk."""
    remote = remote_store()
    with remote.journal("batch") as journal:
        journal.append("a", {"n": 1})
        journal.append("b", [2])
    assert remote.folder is None
    [segment] = remote_objects(remote)
    assert segment.startswith(f"{journal_name('batch')}-")
    assert remote.load(["a", "b", "c"]) == {"a": {"n": 1}, "b": [2]}


def test_a_record_waits_at_most_the_segment_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once the oldest pending record is `SEGMENT_SECONDS` old, the next one writes the segment."""
    monkeypatch.setattr(checkpoints_module, "SEGMENT_SECONDS", 0.0)
    remote = remote_store()
    journal = remote.journal("batch")
    journal.append("a", "A")
    journal.append("b", "B")
    assert len(remote_objects(remote)) == 2
    assert remote.load(["a", "b"]) == {"a": "A", "b": "B"}


def test_records_not_yet_in_a_segment_when_a_task_run_dies_are_unfinished() -> None:
    """A journal that never closes (its process died) leaves its pending records unwritten: those items run again."""
    remote = remote_store()
    remote.journal("batch").append("a", "A")
    assert remote.load(["a"]) == {}


def test_a_task_run_reads_only_its_own_segments() -> None:
    """On an object store, too, a task run looking for its earlier attempt reads its journal's segments only."""
    remote = remote_store()
    with remote.journal("one") as journal:
        journal.append("a", "A")
    with remote.journal("two") as journal:
        journal.append("b", "B")
    assert remote.load(["a", "b"], journal=journal_name("two")) == {"b": "B"}
    assert remote.load(["a", "b"]) == {"a": "A", "b": "B"}


def test_a_last_segment_that_cannot_be_written_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    """Closing the journal writes what is pending; storage refusing it fails the task run, not silently."""
    remote = remote_store()
    journal = remote.journal("batch")
    journal.append("a", "A")

    def refuse(self: RemoteFileSystem, path: str, content: bytes) -> None:
        raise PermissionError("bucket is read-only")

    monkeypatch.setattr(RemoteFileSystem, "write_path", refuse)
    with pytest.raises(PermissionError):
        journal.close()


def test_a_single_record_object_is_still_read_on_an_object_store() -> None:
    """Records written one per object (by other storage without append) are read alongside segments."""
    remote = remote_store()
    remote.write_record("a", "A")
    assert remote.load(["a"]) == {"a": "A"}
    assert remote.storage.read_path(checkpoint_key("i1", PROCESSOR, "a")) == encode("a", "A")


def test_a_damaged_object_counts_as_unfinished() -> None:
    """On remote storage a record with a bad checksum is not returned."""
    remote = remote_store()
    remote.write_record("a", "A")
    path = checkpoint_key("i1", PROCESSOR, "a")
    remote.storage.write_path(path, remote.storage.read_path(path).replace(b'"A"', b'"B"'))
    assert remote.load(["a"]) == {}


def test_a_recorded_output_comes_back_for_the_same_items(tmp_path: Path) -> None:
    """The output of a finished run is read back whole, keyed by its items in order."""
    checkpoints = store(tmp_path)
    checkpoints.save_output(["a", "b"], ["A", "B"])
    assert checkpoints.load_output(["a", "b"]) == {"a": "A", "b": "B"}
    assert checkpoints.load_output(["b", "a"]) is None


def test_a_damaged_output_record_falls_back_to_the_items(tmp_path: Path) -> None:
    """An output record with a bad checksum is ignored, so the items' own records answer."""
    checkpoints = store(tmp_path)
    checkpoints.save_output(["a"], ["A"])
    assert checkpoints.folder is not None
    path = Path(checkpoints.folder) / output_name(["a"])
    path.write_bytes(path.read_bytes().replace(b'["A"]', b'["Z"]'))
    assert checkpoints.load_output(["a"]) is None


def test_the_output_record_is_not_an_item(tmp_path: Path) -> None:
    """Loading items never mistakes the output record for an item's record."""
    checkpoints = store(tmp_path)
    checkpoints.save_output(["a"], ["A"])
    assert checkpoints.load(["a", output_name(["a"])]) == {}


def test_an_output_that_cannot_be_recorded_is_only_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The output record is an optimisation: failing to write it does not raise."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    checkpoints = store(blocker)
    with caplog.at_level(logging.WARNING, logger="fanout.storage.checkpoints"):
        checkpoints.save_output(["a"], ["A"])
    assert "could not record the output" in caplog.text


def test_every_starter_defaults_to_one_absolute_result_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unset, result storage is `.fanout/storage` made absolute, and starters hand that path to their workers."""
    monkeypatch.delenv("FANOUT_RESULT_STORAGE")
    settings = get_settings()
    folder = Path(".fanout/storage").absolute()
    assert result_storage(settings).basepath == str(folder)
    assert storage_environment(settings) == {"FANOUT_RESULT_STORAGE": str(folder)}


def test_a_configured_folder_wins_over_prefects_storage_block(tmp_path: Path) -> None:
    """FANOUT_RESULT_STORAGE set (conftest sets it): that folder, even with Prefect's default block configured."""
    with temporary_settings({PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK: "remote-file-system/shared"}):
        settings = get_settings()
        assert storage_environment(settings) == {"FANOUT_RESULT_STORAGE": str(settings.result_storage)}


def test_unset_with_prefects_storage_block_the_block_holds_the_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """FANOUT_RESULT_STORAGE unset and Prefect's default block configured: no folder is handed on."""
    monkeypatch.delenv("FANOUT_RESULT_STORAGE")
    with temporary_settings({PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK: "remote-file-system/shared"}):
        assert storage_environment(get_settings()) == {}


def test_a_storage_url_is_an_object_store_every_host_reaches(monkeypatch: pytest.MonkeyPatch) -> None:
    """FANOUT_RESULT_STORAGE=s3://bucket/prefix: a RemoteFileSystem on that URL, handed on to workers as is."""
    monkeypatch.setenv("FANOUT_RESULT_STORAGE", "s3://fanout-results/runs")
    settings = get_settings()
    storage = result_storage(settings)
    assert isinstance(storage, RemoteFileSystem) and storage.basepath == "s3://fanout-results/runs"
    assert storage_environment(settings) == {"FANOUT_RESULT_STORAGE": "s3://fanout-results/runs"}

"""The results index places the records this process wrote from its note of them, and reads anything else."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem

from fanout.storage import checkpoint_format
from fanout.storage.checkpoints import CheckpointStore
from fanout.storage.instance_results import InstanceResults, record_plan, refresh_index
from fanout.storage.results_index import ResultsIndex
from fanout.storage.written import WrittenRecords, WrittenSpan, noting_writes

PROCESSOR = "tests.support.processors:scripted"


def store(root: Path) -> CheckpointStore:
    return CheckpointStore(LocalFileSystem(basepath=str(root)), "inst", PROCESSOR)


def journal_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The journals the index reads from here on, by name."""
    read: list[str] = []
    real = ResultsIndex._index_tail

    def counted(self: ResultsIndex, name: str, *args: object) -> int:
        read.append(name)
        return real(self, name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ResultsIndex, "_index_tail", counted)
    return read


def statuses(root: Path, count: int) -> list[tuple[str, object]]:
    return [(row.status, row.result) for row in InstanceResults(str(root), "inst").page(0, count).items]


def test_noted_records_are_indexed_without_reading_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Records a stage noted as it appended them are placed from the note, and pages show them completed."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a", "b", "c"])
    with noting_writes() as written, store(tmp_path).journal("batch-1") as journal:
        journal.append("c", 3)
        journal.append("a", 1)
    read = journal_reads(monkeypatch)
    refresh_index(str(tmp_path), "inst", written)
    assert read == []
    assert statuses(tmp_path, 3) == [("completed", 1), ("pending", None), ("completed", 3)]
    assert read == []  # the page found the index up to date


def test_a_journal_with_bytes_the_note_does_not_account_for_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A journal that an earlier attempt wrote to first, unindexed, is read whole: the note covers only its tail."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a", "b"])
    with store(tmp_path).journal("batch-1") as journal:
        journal.append("a", 1)
    with noting_writes() as written, store(tmp_path).journal("batch-1") as journal:
        journal.append("b", 2)
    read = journal_reads(monkeypatch)
    refresh_index(str(tmp_path), "inst", written)
    assert len(read) == 1
    assert statuses(tmp_path, 2) == [("completed", 1), ("completed", 2)]


def test_a_record_another_writer_slipped_between_noted_ones_sends_the_index_to_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Bytes appended between two noted records (another writer) make the note disagree with the file: it is read."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a", "b", "c"])
    with noting_writes() as written, store(tmp_path).journal("batch-1") as journal:
        journal.append("a", 1)
        (journal_path,) = Path(store(tmp_path).prepare_folder()).glob("journal-*")
        with open(journal_path, "ab") as other:
            other.write(checkpoint_format.encode("b", 2))
        journal.append("c", 3)
    read = journal_reads(monkeypatch)
    refresh_index(str(tmp_path), "inst", written)
    assert read == [journal.name]
    assert statuses(tmp_path, 3) == [("completed", 1), ("completed", 2), ("completed", 3)]
    assert "damaged" not in caplog.text


def test_the_note_places_records_only_for_the_bytes_it_accounts_for() -> None:
    """A note answers for a journal's bytes only when its spans cover them end to end."""
    written = WrittenRecords()
    written.add("j", WrittenSpan(10, ["a", "b"], [5, 7]))
    assert written.placed("j", 10, 22) == [("a", 10, 4), ("b", 15, 6)]
    assert written.placed("j", 0, 22) is None
    assert written.placed("j", 10, 30) is None
    assert written.placed("other", 0, 5) is None


def test_outside_a_noting_stage_a_journal_notes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A journal opened where no stage notes (a Dask worker) leaves the index to read it."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a"])
    with noting_writes() as written:
        pass
    with store(tmp_path).journal("batch-1") as journal:
        journal.append("a", 1)
    read = journal_reads(monkeypatch)
    refresh_index(str(tmp_path), "inst", written)
    assert read == [journal.name]
    assert statuses(tmp_path, 1) == [("completed", 1)]

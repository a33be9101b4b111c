"""Per-item checkpoints in Prefect result storage, scoped to the instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore

from flows.checkpoints import CheckpointStore, checkpoint_key, item_digest, journal_name

PROCESSOR = "flows.processor:processed"


def store(folder: Path, instance: str = "i1") -> CheckpointStore:
    return CheckpointStore(LocalFileSystem(basepath=str(folder)), instance, PROCESSOR)


def test_key_names_instance_and_processor_not_the_run() -> None:
    """The key is built from instance, processor and item only."""
    assert checkpoint_key("i1", PROCESSOR, "item-1").startswith("fanout/i1/flows.processor.processed/")


def test_items_with_path_characters_get_safe_keys() -> None:
    """An item containing slashes or dots cannot escape its instance's folder."""
    key = checkpoint_key("i1", PROCESSOR, "../../etc/passwd")
    assert key.count("/") == 3 and ".." not in key


def test_saved_items_are_found_in_bulk(tmp_path: Path) -> None:
    """Saved items come back with their values; others are absent."""
    checkpoints = store(tmp_path)
    checkpoints.save("a", {"n": 1})
    checkpoints.save("c", "C")
    assert checkpoints.load(["a", "b", "c"]) == {"a": {"n": 1}, "c": "C"}


def test_another_instance_sees_nothing(tmp_path: Path) -> None:
    """Checkpoints of one instance are invisible to another."""
    store(tmp_path, "i1").save("a", 1)
    assert store(tmp_path, "i2").load(["a"]) == {}


def test_half_written_record_counts_as_unfinished(tmp_path: Path) -> None:
    """A truncated record (host died mid-write) makes the item run again, not fail the run."""
    checkpoints = store(tmp_path)
    checkpoints.save("a", 1)
    (tmp_path / checkpoints.key("a")).write_text('{"metadata": ')
    assert checkpoints.load(["a"]) == {}


def test_a_saved_checkpoint_is_the_record_result_store_writes(tmp_path: Path) -> None:
    """A checkpoint's bytes are exactly what Prefect's `ResultStore.write` puts at the same key."""
    checkpoints = store(tmp_path / "ours")
    checkpoints.save("a", {"n": 1})
    prefect_store = ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path / "ours")))
    prefect_store.write({"n": 1}, key=checkpoints.key("a") + "-prefect")
    ours = (tmp_path / "ours" / checkpoints.key("a")).read_bytes()
    theirs = (tmp_path / "ours" / (checkpoints.key("a") + "-prefect")).read_bytes()
    assert ours == theirs.replace(b"-prefect", b"")


def test_result_store_reads_a_saved_checkpoint(tmp_path: Path) -> None:
    """Prefect's `ResultStore.read` gets the value back from a checkpoint key."""
    checkpoints = store(tmp_path)
    checkpoints.save("a", ["x", 2])
    prefect_store = ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path)))
    assert prefect_store.read(checkpoints.key("a")).result == ["x", 2]


def test_a_record_written_by_result_store_is_a_checkpoint(tmp_path: Path) -> None:
    """A record Prefect wrote at an item's key (say, by the per-item task) counts as finished."""
    checkpoints = store(tmp_path)
    prefect_store = ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path)))
    prefect_store.write("from a task run", key=checkpoints.key("b"))
    assert checkpoints.load(["a", "b"]) == {"b": "from a task run"}


def test_journaled_items_are_found_in_bulk(tmp_path: Path) -> None:
    """Items appended to a batch's journal come back with their values, per item."""
    checkpoints = store(tmp_path)
    with checkpoints.journal(journal_name("a..c")) as journal:
        journal.append("a", {"n": 1})
        journal.append("c", "C")
    assert checkpoints.load(["a", "b", "c"]) == {"a": {"n": 1}, "c": "C"}


def test_a_journal_line_is_the_record_result_store_writes(tmp_path: Path) -> None:
    """Each journal line is byte for byte the record `ResultStore.write` puts at the item's key."""
    checkpoints = store(tmp_path)
    with checkpoints.journal(journal_name("a..a")) as journal:
        journal.append("a", {"n": 1})
    ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path))).write({"n": 1}, key=checkpoints.key("a"))
    folder = (tmp_path / checkpoints.key("a")).parent
    line = (folder / journal_name("a..a")).read_bytes()
    assert line == (tmp_path / checkpoints.key("a")).read_bytes() + b"\n"


@pytest.mark.parametrize("value", ["Processed item-1", "ü" * 300, 7, 2**70, 2.5, True, None])
def test_a_scalar_journal_line_is_the_record_result_store_writes(tmp_path: Path, value: Any) -> None:
    """Scalars, which skip cloudpickle's set-up, still give the bytes `ResultStore.write` gives."""
    checkpoints = store(tmp_path)
    with checkpoints.journal(journal_name("a..a")) as journal:
        journal.append("a", value)
    ResultStore(result_storage=LocalFileSystem(basepath=str(tmp_path))).write(value, key=checkpoints.key("a"))
    folder = (tmp_path / checkpoints.key("a")).parent
    assert (folder / journal_name("a..a")).read_bytes() == (tmp_path / checkpoints.key("a")).read_bytes() + b"\n"
    assert checkpoints.load(["a"]) == {"a": value}


def test_a_line_cut_short_by_a_crash_counts_as_unfinished(tmp_path: Path) -> None:
    """A journal's unterminated last line (process killed mid-write) makes only that item run again."""
    checkpoints = store(tmp_path)
    with checkpoints.journal(journal_name("a..b")) as journal:
        journal.append("a", 1)
        journal.append("b", 2)
    path = (tmp_path / checkpoints.key("a")).parent / journal_name("a..b")
    path.write_bytes(path.read_bytes()[:-20])
    assert checkpoints.load(["a", "b"]) == {"a": 1}


def test_a_batch_reads_only_its_own_journal(tmp_path: Path) -> None:
    """Asked for one journal, the store ignores the others (a retried batch reads only its own)."""
    checkpoints = store(tmp_path)
    with checkpoints.journal(journal_name("one")) as journal:
        journal.append("a", 1)
    with checkpoints.journal(journal_name("two")) as journal:
        journal.append("b", 2)
    assert checkpoints.load(["a", "b"], journals=[journal_name("two")]) == {"b": 2}


def test_journals_and_per_item_records_load_together(tmp_path: Path) -> None:
    """A rerun finds items whether a per-item task run or a batch checkpointed them."""
    checkpoints = store(tmp_path)
    checkpoints.save("a", "record")
    with checkpoints.journal(journal_name("b..b")) as journal:
        journal.append("b", "journal")
    assert checkpoints.load(["a", "b", "c"]) == {"a": "record", "b": "journal"}


def test_finished_names_every_checkpointed_item_without_reading_values(tmp_path: Path) -> None:
    """`finished()` lists the digests of items with a record or a whole journal line, and no others."""
    checkpoints = store(tmp_path)
    checkpoints.save("a", 1)
    with checkpoints.journal(journal_name("b..c")) as journal:
        journal.append("b", 2)
        journal.append("c", 3)
    path = (tmp_path / checkpoints.key("a")).parent / journal_name("b..c")
    path.write_bytes(path.read_bytes()[:-20])
    assert checkpoints.finished() == {item_digest("a"), item_digest("b")}


def test_a_recorded_output_comes_back_for_the_same_items(tmp_path: Path) -> None:
    """The output of a finished run is read back whole, item by item, for the same item list."""
    checkpoints = store(tmp_path)
    checkpoints.save_output(["a", "b"], ["A", {"b": 2}])
    assert checkpoints.load_output(["a", "b"]) == {"a": "A", "b": {"b": 2}}


def test_a_recorded_output_does_not_answer_for_other_items(tmp_path: Path) -> None:
    """Another item list (or order) or another instance has no output record."""
    checkpoints = store(tmp_path)
    checkpoints.save_output(["a", "b"], ["A", "B"])
    assert checkpoints.load_output(["b", "a"]) is None
    assert checkpoints.load_output(["a"]) is None
    assert store(tmp_path, "i2").load_output(["a", "b"]) is None


def test_an_unreadable_output_record_falls_back_to_the_items(tmp_path: Path) -> None:
    """A damaged output record is ignored, so the items' own checkpoints decide."""
    checkpoints = store(tmp_path)
    checkpoints.save_output(["a"], ["A"])
    for record in (tmp_path / checkpoints.key("a")).parent.glob("output-*"):
        record.write_bytes(b"{not json")
    assert checkpoints.load_output(["a"]) is None


def test_the_output_record_is_not_an_item(tmp_path: Path) -> None:
    """`finished()` counts items only, not the output record beside them."""
    checkpoints = store(tmp_path)
    checkpoints.save("a", "A")
    checkpoints.save_output(["a"], ["A"])
    assert checkpoints.finished() == {item_digest("a")}


def test_an_output_that_cannot_be_recorded_is_only_logged(tmp_path: Path) -> None:
    """Storage refusing the output record does not fail the run; a rerun reads the items instead."""
    (tmp_path / "file").write_text("not a folder")
    checkpoints = store(tmp_path / "file")
    checkpoints.save_output(["a"], ["A"])
    assert checkpoints.load_output(["a"]) is None

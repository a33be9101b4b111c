"""An instance's results read from its plan, its checkpoints and its failures, a page at a time, in O(page)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem, RemoteFileSystem

from fanout.storage import checkpoint_format
from fanout.storage.checkpoints import CheckpointStore
from fanout.storage.instance_results import InstanceResults, record_failures, record_plan, recorded_counts
from fanout.storage.results import NoResults

PROCESSOR = "tests.support.processors:scripted"


def store(root: Path) -> CheckpointStore:
    return CheckpointStore(LocalFileSystem(basepath=str(root)), "inst", PROCESSOR)


def test_page_while_running_shows_finished_and_pending(tmp_path: Path) -> None:
    """Items with a checkpoint are completed with their result; the rest are pending."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a", "b", "c"])
    with store(tmp_path).journal("batch-1") as journal:
        journal.append("b", {"v": 2})
    rows = InstanceResults(str(tmp_path), "inst").page(0, 10).items
    assert [(row.key, row.status, row.result) for row in rows] == [
        ("a", "pending", None),
        ("b", "completed", {"v": 2}),
        ("c", "pending", None),
    ]


def test_failed_items_carry_their_error(tmp_path: Path) -> None:
    """A failed run's results hold every succeeded item and each failed item's last error."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a", "b"])
    with store(tmp_path).journal("batch-1") as journal:
        journal.append("a", 1)
    record_failures(str(tmp_path), "inst", {"b": "ValueError: bad"})
    rows = InstanceResults(str(tmp_path), "inst").page(0, 10).items
    assert [(row.status, row.result, row.error) for row in rows] == [
        ("completed", 1, None),
        ("failed", None, "ValueError: bad"),
    ]


def test_damaged_record_is_not_returned(tmp_path: Path) -> None:
    """A record whose checksum fails is pending, never a wrong result."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a"])
    folder = Path(store(tmp_path).prepare_folder())
    line = checkpoint_format.encode("a", 1).replace(b'"result":1', b'"result":7')
    (folder / "journal-damaged").write_bytes(line)
    assert InstanceResults(str(tmp_path), "inst").page(0, 1).items[0].status == "pending"


def test_rows_walk_every_page_in_order(tmp_path: Path) -> None:
    """`rows()` gives every item in order, across pages."""
    keys = [f"k{index}" for index in range(25)]
    record_plan(str(tmp_path), "inst", PROCESSOR, keys)
    with store(tmp_path).journal("batch-1") as journal:
        for index, key in enumerate(reversed(keys)):
            journal.append(key, index)
    rows = list(InstanceResults(str(tmp_path), "inst").rows(batch=7))
    assert [row["key"] for row in rows] == keys and rows[0]["result"] == 24


def test_unknown_instance_has_no_results(tmp_path: Path) -> None:
    """An instance without a plan is unknown to the results reader."""
    with pytest.raises(NoResults):
        InstanceResults(str(tmp_path), "ghost")


def test_a_page_decodes_only_its_own_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once indexed, page 50 of 10,000 finished items decodes 100 records, not the run's."""
    keys = [f"k{index}" for index in range(10_000)]
    record_plan(str(tmp_path), "inst", PROCESSOR, keys)
    with store(tmp_path).journal("batch-1") as journal:
        for key in reversed(keys):
            journal.append(key, key.upper())
    results = InstanceResults(str(tmp_path), "inst")
    results.page(0, 1)  # the first read indexes every record once
    decoded: list[bytes] = []
    real_decode = checkpoint_format.decode
    monkeypatch.setattr(checkpoint_format, "decode", lambda line: decoded.append(line) or real_decode(line))
    rows = results.page(4900, 100).items
    assert [row.result for row in rows] == [key.upper() for key in keys[4900:5000]] and len(decoded) == 100


def test_records_appended_after_a_read_show_on_the_next(tmp_path: Path) -> None:
    """Paging while running: each read indexes what was appended since the last one."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a", "b"])
    results = InstanceResults(str(tmp_path), "inst")
    with store(tmp_path).journal("batch-1") as journal:
        journal.append("a", 1)
        assert [row.status for row in results.page(0, 2).items] == ["completed", "pending"]
        journal.append("b", 2)
    with store(tmp_path).journal("batch-2") as journal:
        journal.append("a", 3)
    assert [row.result for row in results.page(0, 2).items] == [3, 2]


def test_a_line_still_being_written_is_read_once_whole(tmp_path: Path) -> None:
    """A record without its LF yet is pending, and completed once the rest of it lands."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a"])
    line = checkpoint_format.encode("a", {"v": 1})
    journal = Path(store(tmp_path).prepare_folder()) / "journal-x"
    journal.write_bytes(line[:20])
    assert InstanceResults(str(tmp_path), "inst").page(0, 1).items[0].status == "pending"
    journal.write_bytes(line)
    assert InstanceResults(str(tmp_path), "inst").page(0, 1).items[0].result == {"v": 1}


def test_a_rerun_over_other_keys_starts_a_new_index(tmp_path: Path) -> None:
    """A plan with other keys replaces the index: rows follow the new plan."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a", "b"])
    with store(tmp_path).journal("batch-1") as journal:
        journal.append("a", 1)
        journal.append("b", 2)
    InstanceResults(str(tmp_path), "inst").page(0, 2)
    record_plan(str(tmp_path), "inst", PROCESSOR, ["b", "c"])
    rows = InstanceResults(str(tmp_path), "inst").page(0, 2).items
    assert [(row.key, row.status, row.result) for row in rows] == [("b", "completed", 2), ("c", "pending", None)]


def test_pages_read_from_a_remote_block(tmp_path: Path) -> None:
    """On an object store (`memory://`) pages find records in the instance's journal segments."""
    storage = RemoteFileSystem(basepath=f"memory://fanout-{uuid.uuid4().hex}")
    record_plan(storage, "inst", PROCESSOR, [f"k{index}" for index in range(2500)])
    remote = CheckpointStore(storage, "inst", PROCESSOR)
    with remote.journal("batch-1") as journal:
        journal.append("k1500", "done")
    record_failures(storage, "inst", {"k1501": "ValueError: bad"})
    rows = InstanceResults(storage, "inst").page(1499, 3).items
    assert [(row.index, row.status, row.result, row.error) for row in rows] == [
        (1499, "pending", None, None),
        (1500, "completed", "done", None),
        (1501, "failed", None, "ValueError: bad"),
    ]


def test_a_settled_run_leaves_its_index_up_to_date(tmp_path: Path) -> None:
    """`record_failures` (the run settling) indexes every journal, so a later page scans nothing new."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a", "b"])
    with store(tmp_path).journal("batch-1") as journal:
        journal.append("a", 1)
    record_failures(str(tmp_path), "inst", {"b": "ValueError: bad"})
    results = InstanceResults(str(tmp_path), "inst")
    assert results.index is not None and results.index.locate(0, 2)[0] is not None
    assert [row.status for row in results.page(0, 2).items] == ["completed", "failed"]


def test_a_journal_shorter_than_indexed_starts_the_index_again(tmp_path: Path) -> None:
    """A journal replaced by a shorter one (storage restored) is indexed anew, never read at stale offsets."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a", "b"])
    with store(tmp_path).journal("batch-1") as journal:
        journal.append("a", 1)
        journal.append("b", 2)
    InstanceResults(str(tmp_path), "inst").page(0, 2)
    only_b = checkpoint_format.encode("b", 3)
    (journal_path,) = Path(store(tmp_path).prepare_folder()).glob("journal-*")
    journal_path.write_bytes(only_b)
    rows = InstanceResults(str(tmp_path), "inst").page(0, 2).items
    assert [(row.status, row.result) for row in rows] == [("pending", None), ("completed", 3)]


def finished_run(root: Path, count: int = 40) -> list[str]:
    """A plan of `count` items, every one checkpointed, and its index built by a first read."""
    keys = [f"k{index}" for index in range(count)]
    record_plan(str(root), "inst", PROCESSOR, keys)
    with store(root).journal("batch-1") as journal:
        for index, key in enumerate(keys):
            journal.append(key, index)
    assert all(row["status"] == "completed" for row in InstanceResults(str(root), "inst").rows())
    return keys


def slots_file(root: Path) -> Path:
    (slots,) = root.glob("fanout/inst/results-index/slots")
    return slots


def assert_every_item_completed(root: Path, keys: list[str]) -> None:
    rows = list(InstanceResults(str(root), "inst").rows(batch=7))
    assert [(row["key"], row["status"], row["result"]) for row in rows] == [
        (key, "completed", index) for index, key in enumerate(keys)
    ]


def test_swapped_slots_are_rebuilt_from_the_journals(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two slots of the index swapped: the damage is seen, the index rebuilt with a warning, every item completed."""
    keys = finished_run(tmp_path)
    data = bytearray(slots_file(tmp_path).read_bytes())
    size = len(data) // len(keys)
    data[3 * size : 4 * size], data[30 * size : 31 * size] = data[30 * size : 31 * size], data[3 * size : 4 * size]
    slots_file(tmp_path).write_bytes(bytes(data))
    assert_every_item_completed(tmp_path, keys)
    assert "results index" in caplog.text and "rebuilt from the journals" in caplog.text


def test_random_slots_are_rebuilt_from_the_journals(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The index's slots overwritten with random bytes: rebuilt with a warning, every item completed."""
    keys = finished_run(tmp_path)
    slots_file(tmp_path).write_bytes(os.urandom(slots_file(tmp_path).stat().st_size))
    assert_every_item_completed(tmp_path, keys)
    assert "rebuilt from the journals" in caplog.text


def test_a_slot_emptied_by_damage_does_not_make_an_item_pending(tmp_path: Path) -> None:
    """A finished item's slot zeroed (or swapped with an empty one) is caught: the item stays completed."""
    keys = finished_run(tmp_path)
    data = bytearray(slots_file(tmp_path).read_bytes())
    size = len(data) // len(keys)
    data[5 * size : 6 * size] = bytes(size)
    slots_file(tmp_path).write_bytes(bytes(data))
    assert_every_item_completed(tmp_path, keys)


def test_damaged_index_state_is_rebuilt(tmp_path: Path) -> None:
    """The index's state file replaced by other JSON, or by random bytes, is rebuilt, not a crash."""
    keys = finished_run(tmp_path)
    (state,) = tmp_path.glob("fanout/inst/results-index/state.json")
    for damage in (b'{"version": 2, "journals": 7}', os.urandom(64)):
        state.write_bytes(damage)
        assert_every_item_completed(tmp_path, keys)


def test_recorded_counts_are_the_plans_total_and_its_failed_items(tmp_path: Path) -> None:
    """A finished stage's counts come from its plan and failed items, under the first instance that has a plan."""
    record_plan(str(tmp_path), "inst", PROCESSOR, ["a", "b", "c"])
    record_failures(str(tmp_path), "inst", {"b": "ValueError: bad"})
    assert recorded_counts(str(tmp_path), ["no-such-instance", "inst"]) == (3, 1)
    assert recorded_counts(str(tmp_path), ["no-such-instance"]) is None

"""An instance's results read from its plan, its checkpoint journals and its failures, a page at a time."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem

from flows import checkpoint_format
from flows.checkpoints import CheckpointStore
from flows.instance_results import InstanceResults, peek_key, record_failures, record_plan
from flows.results import NoResults

PROCESSOR = "devstack.processors:scripted"


def store(root: Path) -> CheckpointStore:
    return CheckpointStore(LocalFileSystem(basepath=str(root)), "inst", PROCESSOR)


def test_peek_key_reads_the_key_a_record_claims() -> None:
    """The key is read from a record's head, escapes and all, without decoding its result."""
    for key in ("item-1", 'quote"and\\slash', "ünïcode", "sha256-" + "a" * 40):
        assert peek_key(checkpoint_format.encode(key, {"big": [1] * 100}).rstrip(b"\n")) == key


def test_peek_key_of_other_lines_is_none() -> None:
    """A line in another format has no key to peek."""
    assert peek_key(b'{"metadata": {}}') is None and peek_key(b"") is None


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

"""Per-item checkpoints in Prefect result storage, scoped to the instance."""

from __future__ import annotations

from pathlib import Path

from prefect.filesystems import LocalFileSystem

from flows.batching import batch_size_for, split
from flows.checkpoints import CheckpointStore, checkpoint_key
from flows.settings import FanoutSettings

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


def test_small_runs_get_one_task_per_item() -> None:
    """Up to `per_item_task_limit` items, each item is its own task run."""
    assert batch_size_for(5, FanoutSettings(_env_file=None)) == 1


def test_large_runs_are_batched_to_keep_every_slot_busy() -> None:
    """Large runs are split so each parallel slot gets several batches."""
    size = batch_size_for(10_000, FanoutSettings(_env_file=None, max_parallel=8))
    assert 1 < size <= 10_000 // 8 and len(split(list("x" * 10_000), size)) >= 8

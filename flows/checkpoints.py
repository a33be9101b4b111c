"""Per-item checkpoints: Prefect result records keyed by instance, processor and item.

A finished item's result is written to Prefect result storage under
`fanout/<instance_id>/<processor>/<sha256(item)>`. The same key is the
`cache_key_fn` of the per-item task, so a record written by a task run and one
written inside a batch are interchangeable. The key does not contain the flow
run, so a new run (or Prefect's Retry) of the same instance finds it; it does
not contain the processor's source, so fixing a processor's bug keeps the
items it had already finished.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.results import ResultStore, get_default_result_storage

from flows.settings import FanoutSettings

logger = logging.getLogger(__name__)

KEY_ROOT = "fanout"


def item_digest(item: str) -> str:
    """A path-safe, collision-free name for an item id of any characters."""
    return hashlib.sha256(item.encode()).hexdigest()[:40]


def processor_tag(processor: str) -> str:
    """A path-safe name for a processor spec (`pkg.mod:fn` -> `pkg.mod.fn`)."""
    return processor.replace(":", ".")


def instance_prefix(instance_id: str, processor: str) -> str:
    """The folder (key prefix) that holds one instance's checkpoints for one processor."""
    return f"{KEY_ROOT}/{instance_id}/{processor_tag(processor)}"


def checkpoint_key(instance_id: str, processor: str, item: str) -> str:
    """The result-storage key of one item's checkpoint."""
    return f"{instance_prefix(instance_id, processor)}/{item_digest(item)}"


def task_cache_key(context: Any, parameters: dict[str, Any]) -> str:
    """Prefect `cache_key_fn` of the per-item task: the item's checkpoint key."""
    return checkpoint_key(parameters["instance_id"], parameters["processor"], parameters["item"])


def storage_folder(settings: FanoutSettings) -> Path | None:
    """The configured result folder as an absolute path, or None for Prefect's default."""
    if settings.result_storage is None:
        return None
    return settings.result_storage.expanduser().resolve()


def result_storage(settings: FanoutSettings) -> WritableFileSystem:
    """The configured result storage: a local folder, or Prefect's default."""
    folder = storage_folder(settings)
    if folder is not None:
        return LocalFileSystem(basepath=str(folder))
    return get_default_result_storage()


class CheckpointStore:
    """The checkpoints of one instance, on top of a Prefect `ResultStore`."""

    def __init__(self, storage: WritableFileSystem, instance_id: str, processor: str) -> None:
        self.storage = storage
        self.instance_id = instance_id
        self.processor = processor
        self._results = ResultStore(result_storage=storage, cache_result_in_memory=False)

    def key(self, item: str) -> str:
        """This instance's checkpoint key for `item`."""
        return checkpoint_key(self.instance_id, self.processor, item)

    def save(self, item: str, value: Any) -> None:
        """Record that `item` finished with `value`."""
        self._results.write(value, key=self.key(item))

    def load(self, items: Iterable[str]) -> dict[str, Any]:
        """The finished items among `items` and their values, found in bulk.

        A record that cannot be read (say, half-written when a host died) counts
        as missing: the item runs again, which at-least-once delivery allows.
        """
        wanted = list(items)
        present = self._present_digests()
        found: dict[str, Any] = {}
        for item in wanted:
            if present is not None and item_digest(item) not in present:
                continue
            try:
                found[item] = self._results.read(self.key(item)).result
            except Exception as error:  # noqa: BLE001 - unreadable means not finished
                if present is not None:
                    logger.warning("checkpoint of %s unreadable, item will run again: %s", item, error)
        return found

    def _present_digests(self) -> set[str] | None:
        """Names under this instance's prefix in one listing, when storage is a local folder."""
        if not isinstance(self.storage, LocalFileSystem):
            return None
        folder = Path(self.storage.basepath or ".").expanduser() / instance_prefix(self.instance_id, self.processor)
        try:
            return set(os.listdir(folder))
        except FileNotFoundError:
            return set()

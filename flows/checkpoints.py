"""Per-item checkpoints: Prefect result records keyed by instance, processor and item.

A finished item's result is written to Prefect result storage under
`fanout/<instance_id>/<processor>/<sha256(item)>`. The same key is the
`cache_key_fn` of the per-item task, so a record written by a task run and one
written inside a batch are interchangeable. The key does not contain the flow
run, so a new run (or Prefect's Retry) of the same instance finds it; it does
not contain the processor's source, so fixing a processor's bug keeps the
items it had already finished.

Records are Prefect `ResultRecord`s, byte for byte what `ResultStore.write`
produces, and `ResultStore.read` reads them. On a local folder the store skips
what makes `ResultStore` slow per call (resolving the base path, validating the
record model) and lists the instance's folder once to find every finished
item; other storage blocks go through `ResultStore` itself.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.results import ResultRecord, ResultRecordMetadata, ResultStore, get_default_result_storage
from prefect.serializers import PickleSerializer, Serializer
from prefect.utilities.importtools import from_qualified_name

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


class RecordCodec:
    """Encodes and decodes `ResultRecord` bytes without a pydantic round trip per record.

    The metadata of every record a store writes is the same but for its storage
    key, so it is built once; the value goes through the store's own Prefect
    serializer. A record in any other shape (another serializer, an expiration)
    is decoded by `ResultRecord.deserialize`, so nothing Prefect can read is lost.
    """

    def __init__(self, serializer: Serializer) -> None:
        self.serializer = serializer
        self._metadata = json.loads(ResultRecordMetadata(serializer=serializer).dump_bytes())
        after_key = {name: value for name, value in self._metadata.items() if name != "storage_key"}
        # `{"metadata":{"storage_key":<key>,<the rest>},"result":<value>}`, pydantic's compact JSON.
        self._after_key = "," + json.dumps(after_key, separators=(",", ":"))[1:] + ',"result":'
        self._dumps, self._loads = _value_codec(serializer)

    def encode(self, value: Any, storage_key: str) -> bytes:
        """The bytes `ResultRecord(...).serialize()` gives for `value` stored at `storage_key`."""
        result = self._dumps(value).decode()
        return (
            '{"metadata":{"storage_key":' + json.dumps(storage_key) + self._after_key + json.dumps(result) + "}"
        ).encode()

    def decode(self, data: bytes) -> Any:
        """The value held by record bytes; raises when they are not a complete record."""
        record = json.loads(data.decode())
        metadata = record.get("metadata") if isinstance(record, dict) else None
        if (
            isinstance(metadata, dict)
            and metadata.get("serializer") == self._metadata["serializer"]
            and metadata.get("expiration") is None
            and isinstance(record.get("result"), str)
        ):
            return self._loads(record["result"].encode())
        return ResultRecord.deserialize(data).result


def _value_codec(serializer: Serializer) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """The serializer's `dumps`/`loads`; for Prefect's pickle serializer the same two steps
    (pickle, base64) with its pickle library imported once rather than on every call."""
    if not isinstance(serializer, PickleSerializer):
        return serializer.dumps, serializer.loads
    pickler = from_qualified_name(serializer.picklelib)
    return (
        lambda value: base64.encodebytes(pickler.dumps(value)),
        lambda blob: pickler.loads(base64.decodebytes(blob)),
    )


class CheckpointStore:
    """The checkpoints of one instance, on top of Prefect result storage."""

    def __init__(self, storage: WritableFileSystem, instance_id: str, processor: str) -> None:
        self.storage = storage
        self.instance_id = instance_id
        self.processor = processor
        self._results = ResultStore(result_storage=storage, cache_result_in_memory=False)
        self._codec = RecordCodec(self._results.serializer)
        self._folder = _local_folder(storage, instance_prefix(instance_id, processor))
        self._folder_ready = False

    def key(self, item: str) -> str:
        """This instance's checkpoint key for `item`."""
        return checkpoint_key(self.instance_id, self.processor, item)

    def save(self, item: str, value: Any) -> None:
        """Record that `item` finished with `value`, as `ResultStore.write` would."""
        if self._folder is None:
            self._results.write(value, key=self.key(item))
            return
        path = os.path.join(self._folder, item_digest(item))
        data = self._codec.encode(value, path)
        if not self._folder_ready:
            os.makedirs(self._folder, exist_ok=True)
            self._folder_ready = True
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(descriptor, data)
        finally:
            os.close(descriptor)

    def finished(self) -> set[str]:
        """Digests of the items that have a record, from one listing (local folders only)."""
        if self._folder is None:
            return set()
        try:
            return set(os.listdir(self._folder))
        except FileNotFoundError:
            return set()

    def load(self, items: Iterable[str]) -> dict[str, Any]:
        """The finished items among `items` and their values, found in bulk.

        A record that cannot be read (say, half-written when a host died) counts
        as missing: the item runs again, which at-least-once delivery allows.
        """
        if self._folder is None:
            return self._load_one_by_one(items)
        present = self.finished()
        found: dict[str, Any] = {}
        if not present:
            return found
        for item in items:
            digest = item_digest(item)
            if digest not in present:
                continue
            try:
                with open(os.path.join(self._folder, digest), "rb") as record:
                    found[item] = self._codec.decode(record.read())
            except Exception as error:  # noqa: BLE001 - unreadable means not finished
                logger.warning("checkpoint of %s unreadable, item will run again: %s", item, error)
        return found

    def _load_one_by_one(self, items: Iterable[str]) -> dict[str, Any]:
        """Remote storage: ask `ResultStore` for each item; a missing record is not finished."""
        found: dict[str, Any] = {}
        for item in items:
            try:
                found[item] = self._results.read(self.key(item)).result
            except Exception:  # noqa: BLE001 - missing or unreadable means not finished
                continue
        return found


def _local_folder(storage: WritableFileSystem, prefix: str) -> str | None:
    """The absolute folder of `prefix` when storage is a local folder, resolved once."""
    if not isinstance(storage, LocalFileSystem):
        return None
    base = Path(storage.basepath or ".").expanduser().resolve()
    return str(base / prefix)

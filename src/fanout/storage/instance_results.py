"""One instance's results as the results API and `fanout results` read them: plan, checkpoints, failures.

The flow writes (`keep_plan`, `keep_failures`); the webhook and the CLI read (`InstanceResults`), in
other processes, during or after the run. All of it goes through the result storage block, so local
folders and remote blocks work alike. A page costs O(page) on a local folder (through the results index)
and O(run) on an object store, where records sit in journal segments.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem

from fanout.core.errors import CheckpointNotWritten
from fanout.core.outcome import ItemOutcome
from fanout.core.prefect_adapter import read_block_path as _read
from fanout.core.prefect_adapter import write_block_path as _write
from fanout.storage import checkpoint_format
from fanout.storage.checkpoints import KEY_ROOT, CheckpointStore, instance_prefix, item_digest
from fanout.storage.results import (
    PLAN_CHUNK,
    NoResults,
    ResultsPage,
    build_page,
    check_window,
    chunk_lines,
    chunk_name,
    chunks_of,
    decode_chunk,
    encode_chunk,
)
from fanout.storage.results_index import ResultsIndex
from fanout.storage.written import WrittenRecords

logger = logging.getLogger(__name__)

PLAN_META = "plan.json"
PLAN_VERSION = 2
FAILURES_FILE = "failures.jsonl"
Storage = WritableFileSystem | str
"""A result storage block, or a local folder's path."""


def storage_block(storage: Storage) -> WritableFileSystem:
    return LocalFileSystem(basepath=storage) if isinstance(storage, str) else storage


def local_root(storage: object) -> str | None:
    """The absolute folder of a local result storage block, or None for remote storage."""
    if not isinstance(storage, LocalFileSystem):
        return None
    return os.path.realpath(os.path.expanduser(storage.basepath or "."))


def instance_path(instance_id: str) -> str:
    """`fanout/<instance>`, under the storage's root: where an instance's plan and failures live."""
    return f"{KEY_ROOT}/{instance_id}"


def keep_plan(storage: Storage, instance_id: str, processor: str, keys: Sequence[str]) -> None:
    """Write the run's plan (keys in order, in chunks, then its metadata) before any item starts.

    A rerun over the same keys keeps the plan it finds (a reader may be reading
    it). Storage that refuses the plan would refuse every checkpoint too: the run
    fails here, before any item runs, with `CheckpointNotWritten` naming the error.
    """
    block = storage_block(storage)
    base = instance_path(instance_id)
    chunks = [encode_chunk(keys[start : start + PLAN_CHUNK]) for start in range(0, len(keys), PLAN_CHUNK)]
    digest = hashlib.sha256(b"".join(hashlib.sha256(chunk).digest() for chunk in chunks)).hexdigest()
    meta = {"version": PLAN_VERSION, "processor": processor, "total": len(keys), "chunk": PLAN_CHUNK, "digest": digest}
    if _plan_meta(block, base) == meta:
        return
    try:
        for number, chunk in enumerate(chunks):
            _write(block, f"{base}/{chunk_name(number)}", chunk)
        _write(block, f"{base}/{PLAN_META}", json.dumps(meta).encode())
    except Exception as error:  # each storage block raises its own kind
        raise CheckpointNotWritten(f"storage refused the run's plan: {error}") from error


def keep_failures(storage: Storage, instance_id: str, outcomes: Iterable[ItemOutcome], index: bool = True) -> None:
    """Record the failed `outcomes` (`{key: last error}`, replacing an earlier run's) and, with `index`,
    bring the results index up to date, so pages of the finished run cost O(page). A failure is logged:
    the checkpoints themselves are all stored, and a reader refreshes the index itself."""
    failures = {outcome.item: outcome.error or "" for outcome in outcomes if not outcome.ok}
    block = storage_block(storage)
    lines = "".join(json.dumps({"key": key, "error": error}) + "\n" for key, error in failures.items())
    try:
        _write(block, f"{instance_path(instance_id)}/{FAILURES_FILE}", lines.encode())
    except Exception as error:  # noqa: BLE001 - pages still read, without the failed items' errors
        logger.warning("instance %s: failed items not recorded: %s", instance_id, error)
        return
    if index:
        refresh_index(block, instance_id)


def refresh_index(storage: Storage, instance_id: str, written: WrittenRecords | None = None) -> None:
    """Index the records appended since the results index was last brought up to date (local folders;
    nothing elsewhere), those this process noted as it wrote them (`written`) without reading them back.
    A failure is logged: a reader refreshes the index itself."""
    try:
        results = InstanceResults(storage, instance_id)
        if results.index is not None:
            results.index.refresh(results.plan_keys, written)
    except Exception as error:  # noqa: BLE001 - pages still read, at a reader's cost
        logger.warning("instance %s: results index not updated: %s", instance_id, error)


class InstanceResults:
    """Pages of one instance's results, read from its result storage."""

    def __init__(self, storage: Storage, instance_id: str) -> None:
        self.storage = storage_block(storage)
        self.instance_id = instance_id
        self.base = instance_path(instance_id)
        meta = _plan_meta(self.storage, self.base)
        if meta is None or meta.get("version") != PLAN_VERSION:
            raise NoResults(f"no results recorded for instance {instance_id!r}")
        self.processor: str = meta["processor"]
        self.total: int = meta["total"]
        self.prefix = instance_prefix(instance_id, self.processor)
        root = local_root(self.storage)
        self.index = (
            None
            if root is None
            else ResultsIndex(os.path.join(root, self.base), os.path.join(root, self.prefix), meta["digest"])
        )

    def window(self, offset: int, limit: int) -> list[str]:
        """The plan's keys `offset .. offset+limit-1`, read from the chunks that hold them."""
        keys: list[str] = []
        chunks = chunks_of(offset, limit, self.total)
        for number in chunks:
            keys.extend(decode_chunk(self._chunk(number)))
        first = chunks.start * PLAN_CHUNK if chunks else offset
        return keys[offset - first : offset - first + limit]

    def plan_keys(self) -> list[bytes]:
        """Every key of the plan as records hold it (for indexing new records: O(run))."""
        keys: list[bytes] = []
        for number in chunks_of(0, self.total, self.total):
            keys.extend(chunk_lines(self._chunk(number)))
        return keys

    def failures(self) -> dict[str, str]:
        """`{key: last error}` of the items the last finished run gave up on."""
        try:
            data = _read(self.storage, f"{self.base}/{FAILURES_FILE}")
        except Exception:  # noqa: BLE001 - missing: nothing failed yet (each block raises its own kind)
            return {}
        failures: dict[str, str] = {}
        for line in data.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line still being written
            failures[row["key"]] = row["error"]
        return failures

    def page(self, offset: int, limit: int) -> ResultsPage:
        """Rows `offset .. offset+limit` in item order."""
        check_window(offset, limit)
        window = self.window(offset, limit)
        return build_page(window, offset, self.total, self.finished(offset, window), self.failures())

    def finished(self, offset: int, window: Sequence[str]) -> Mapping[str, Any]:
        """Results of those keys of `window` (plan items from `offset`) that have a sound checkpoint."""
        if not window:
            return {}
        if self.index is not None:
            return self.index.read(offset, window, self.plan_keys)
        if isinstance(self.storage, RemoteFileSystem):  # journal segments, read in one listing: O(run)
            return CheckpointStore(self.storage, self.instance_id, self.processor).load(window)
        found: dict[str, Any] = {}
        for key in window:
            try:
                data = _read(self.storage, f"{self.prefix}/{item_digest(key)}")
            except Exception:  # noqa: BLE001 - missing: not finished (each block raises its own kind)
                continue
            try:
                stored, result = checkpoint_format.decode(data)
            except checkpoint_format.UnreadableRecord:
                continue
            if stored == key:
                found[key] = result
        return found

    def rows(self, batch: int = 1000) -> Iterable[dict[str, Any]]:
        """Every row in item order, a page at a time (for `fanout results`)."""
        offset: int | None = 0
        while offset is not None:
            page = self.page(offset, batch)
            yield from page.document()["items"]
            offset = page.next

    def _chunk(self, number: int) -> bytes:
        return _read(self.storage, f"{self.base}/{chunk_name(number)}")


def _plan_meta(storage: WritableFileSystem, base: str) -> dict[str, Any] | None:
    """The plan's metadata, or None when there is none (or it cannot be read)."""
    try:
        meta: dict[str, Any] = json.loads(_read(storage, f"{base}/{PLAN_META}"))
    except Exception:  # noqa: BLE001 - missing or unreadable: each block raises its own kind
        return None
    return meta if isinstance(meta, dict) else None


def recorded_counts(storage: Storage, instance_ids: Iterable[str]) -> tuple[int, int] | None:
    """`(total, failed)` of the last stage a run finished under the first of `instance_ids` with a plan: its
    plan's item count and its failed items, both written before the stage returned (so before the run's
    final state); None when none of them has a plan or it cannot be read."""
    for instance_id in instance_ids:
        try:
            results = InstanceResults(storage, instance_id)
            return results.total, len(results.failures())
        except Exception:  # noqa: BLE001 - no plan here (NoResults), or an unreadable one: try the next
            continue
    return None


def record_plan(storage: Storage, instance_id: str, processor: str, keys: Sequence[str]) -> None:
    """`keep_plan`, named for callers that record a plan outside a run (tests, tools)."""
    keep_plan(storage, instance_id, processor, keys)


def record_failures(storage: Storage, instance_id: str, failures: Mapping[str, str]) -> None:
    """Record `{key: last error}` as a finished run's failures."""
    keep_failures(storage, instance_id, [ItemOutcome(item=key, error=error) for key, error in failures.items()])


__all__ = [
    "InstanceResults",
    "NoResults",
    "keep_failures",
    "keep_plan",
    "record_failures",
    "record_plan",
    "recorded_counts",
    "refresh_index",
]

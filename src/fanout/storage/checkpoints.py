"""Where checkpoints live: one instance's records in Prefect result storage, in fanout's own format.

Records sit under `fanout/<instance_id>/<processor>/`, independent of the flow run, so a rerun or
Prefect's Retry of the instance finds them: appended to per-task-run journals on local folders, written in
journal segments (one object per half second of a task run's work) on object stores, one object per record
elsewhere. A record that cannot be written fails its item; one that cannot be read counts as absent. See
docs/design/checkpoint-format.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Self

from prefect.exceptions import MissingContextError
from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem
from prefect.logging import get_run_logger
from prefect.results import get_default_result_storage
from prefect.settings import PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK

from fanout.core.prefect_adapter import read_block_path as _read
from fanout.core.prefect_adapter import remote_block_files
from fanout.core.prefect_adapter import write_block_path as _write
from fanout.core.private_files import make_folders, open_private
from fanout.core.settings import ItemSettings, is_url
from fanout.storage import checkpoint_format
from fanout.storage.written import WrittenSpan, current_note

logger = logging.getLogger(__name__)

KEY_ROOT = "fanout"
JOURNAL_PREFIX = "journal-"
OUTPUT_PREFIX = "output-"
SEGMENT_SECONDS = 0.5
"""Longest a finished item's record waits in a task run before its journal segment is written (object stores)."""


def item_digest(key: str) -> str:
    """A path-safe, collision-free name for an item key of any characters."""
    return hashlib.sha256(key.encode()).hexdigest()[:40]


def instance_prefix(instance_id: str, processor: str) -> str:
    """The folder (key prefix) of one instance's checkpoints for one processor (`pkg.mod:fn` -> `pkg.mod.fn`)."""
    return f"{KEY_ROOT}/{instance_id}/{processor.replace(':', '.')}"


def checkpoint_key(instance_id: str, processor: str, key: str) -> str:
    """The storage path of one item's record on storage without append."""
    return f"{instance_prefix(instance_id, processor)}/{item_digest(key)}"


def journal_name(label: str) -> str:
    """The journal of the task run labelled `label`: the same for every attempt of it."""
    return JOURNAL_PREFIX + hashlib.sha256(label.encode()).hexdigest()[:40]


def output_name(keys: Sequence[str]) -> str:
    """The name of the output record of a run over exactly `keys`, in this order."""
    return OUTPUT_PREFIX + hashlib.sha256(json.dumps(list(keys)).encode()).hexdigest()[:40]


def result_storage(settings: ItemSettings) -> WritableFileSystem:
    """The configured storage: the `result_storage` folder (`.fanout/storage` by default) or URL (an fsspec
    file system: `s3://bucket/prefix`), or, when that is not set and Prefect has a default storage block
    configured, that block."""
    if not uses_prefect_block(settings):
        if is_url(settings.result_storage):
            return RemoteFileSystem(basepath=settings.result_storage)
        return LocalFileSystem(basepath=settings.result_storage)
    storage = get_default_result_storage(_sync=True)  # type: ignore[call-arg]
    if not isinstance(storage, WritableFileSystem):
        raise TypeError(f"Prefect's default result storage {storage!r} cannot be written to")
    return storage


def uses_prefect_block(settings: ItemSettings) -> bool:
    """FANOUT_RESULT_STORAGE unset and PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK set: the block holds the records."""
    return "result_storage" not in settings.model_fields_set and bool(PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK.value())


def storage_environment(settings: ItemSettings) -> dict[str, str]:
    """What a starter puts in the environment of the workers and webhook it starts, so that every one of
    them reads and writes the records where it does (the absolute folder, or nothing: the block)."""
    return {} if uses_prefect_block(settings) else {"FANOUT_RESULT_STORAGE": str(settings.result_storage)}


class CheckpointStore:
    """The checkpoints of one instance (and processor) in one storage block."""

    def __init__(self, storage: WritableFileSystem, instance_id: str, processor: str) -> None:
        self.storage = storage
        self.instance_id = instance_id
        self.prefix = instance_prefix(instance_id, processor)
        self.folder = _local_folder(storage, self.prefix)
        self.segmented = isinstance(storage, RemoteFileSystem)
        """Journals go to the object store in segments (and are found by listing)."""

    def load(self, keys: Iterable[str], journal: str | None = None) -> dict[str, Any]:
        """The finished items among `keys` and their results, found in bulk.

        With `journal`, only that journal is read (a task run looking for what an
        earlier attempt of it finished); otherwise every record of the instance.
        """
        wanted = set(keys)
        if self.segmented:
            return self._decode(self._remote_lines(journal), wanted)
        if self.folder is None:
            return self._load_objects(wanted)
        names = [journal] if journal is not None else sorted(self._listing())
        return self._decode(
            (line for name in names if not name.startswith(OUTPUT_PREFIX) for line in self._lines(name)), wanted
        )

    def _decode(self, lines: Iterable[bytes], wanted: set[str]) -> dict[str, Any]:
        """The results of the `wanted` keys among records; unreadable ones are reported and left out."""
        found: dict[str, Any] = {}
        skipped: Counter[str] = Counter()
        for line in lines:
            try:
                key, result = checkpoint_format.decode(line)
            except checkpoint_format.UnreadableRecord as error:
                skipped[str(error)] += 1
                continue
            if key in wanted:
                found[key] = result
        _report_skipped(self.instance_id, skipped)
        return found

    def journal(self, label: str) -> CheckpointJournal:
        """Where the task run labelled `label` appends its finished items."""
        return CheckpointJournal(self, journal_name(label))

    def write_record(self, key: str, result: Any) -> None:
        """One record in its own object (storage without append)."""
        _write(self.storage, f"{self.prefix}/{item_digest(key)}", checkpoint_format.encode(key, result))

    def save_output(self, keys: Sequence[str], output: list[Any]) -> None:
        """Record the ordered output of a run in which every one of `keys` finished.

        A failure is logged, not raised: the items' own records are all there,
        this one only saves a rerun from reading them.
        """
        name = output_name(keys)
        try:
            _write(self.storage, f"{self.prefix}/{name}", checkpoint_format.encode(name, output))
        except Exception as error:  # noqa: BLE001 - an optimisation, never worth failing a run for
            logger.warning("could not record the output of instance %s: %s", self.instance_id, error)

    def load_output(self, keys: Sequence[str]) -> dict[str, Any] | None:
        """Every key's result from the output record of an earlier run over the same keys, or None."""
        name = output_name(keys)
        if self.folder is not None and not os.path.exists(os.path.join(self.folder, name)):
            return None  # the common case, answered without the exception a missing object raises
        try:
            stored, output = checkpoint_format.decode(_read(self.storage, f"{self.prefix}/{name}"))
        except checkpoint_format.UnreadableRecord as error:
            logger.warning("output record of instance %s %s; reading the items' records", self.instance_id, error)
            return None
        except Exception:  # noqa: BLE001 - missing: the items' records still answer
            return None
        if stored != name or not isinstance(output, list) or len(output) != len(keys):
            return None
        return dict(zip(keys, output, strict=True))

    def finished(self) -> set[str]:
        """Digests of the keys with a sound record (local folders only): for watching a run from outside."""
        if self.folder is None:
            return set()
        digests: set[str] = set()
        for name in self._listing():
            if not name.startswith(OUTPUT_PREFIX):
                digests.update(
                    item_digest(key) for line in self._lines(name) if (key := checkpoint_format.key_of(line))
                )
        return digests

    def prepare_folder(self) -> str:
        """The instance's local folder, created (owner-only) when missing."""
        assert self.folder is not None, "only local folders have journals"
        make_folders(self.folder)
        return self.folder

    def _listing(self) -> list[str]:
        assert self.folder is not None
        try:
            return os.listdir(self.folder)
        except (FileNotFoundError, NotADirectoryError):  # nothing stored yet (writing will say what is wrong)
            return []

    def _lines(self, name: str) -> list[bytes]:
        """A journal's whole lines (the piece after its last LF, a write cut short, is left out), or a
        one-record file's content."""
        assert self.folder is not None
        try:
            with open(os.path.join(self.folder, name), "rb") as records:
                data = records.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return []
        return data.split(b"\n")[:-1] if name.startswith(JOURNAL_PREFIX) else [data]

    def _remote_lines(self, journal: str | None) -> list[bytes]:
        """Every record under the instance's prefix on an fsspec file system, read concurrently: the whole
        lines of each journal segment (only `journal`'s, when given) and each one-record object."""
        assert isinstance(self.storage, RemoteFileSystem)
        filesystem, _, paths = remote_block_files(self.storage, self.prefix)
        names = {path: path.rsplit("/", 1)[-1] for path in paths}
        chosen = [
            path
            for path, name in names.items()
            if not name.startswith(OUTPUT_PREFIX) and (journal is None or name.startswith(f"{journal}-"))
        ]
        contents: dict[str, bytes] = filesystem.cat(chosen, on_error="omit") if chosen else {}
        lines: list[bytes] = []
        for path, data in contents.items():
            lines.extend(data.split(b"\n")[:-1] if names[path].startswith(JOURNAL_PREFIX) else [data])
        return lines

    def write_segment(self, journal: str, lines: Sequence[bytes]) -> None:
        """One segment of a journal: its records in one new object."""
        _write(self.storage, f"{self.prefix}/{journal}-{uuid.uuid4().hex[:16]}", b"".join(lines))

    def _load_objects(self, keys: set[str]) -> dict[str, Any]:
        """Storage without append: one read per key; a missing object is an unfinished item."""
        found: dict[str, Any] = {}
        skipped: Counter[str] = Counter()
        for key in keys:
            try:
                data = _read(self.storage, f"{self.prefix}/{item_digest(key)}")
            except Exception:  # noqa: BLE001 - missing: each block raises its own kind, and it is no news
                continue
            try:
                stored, result = checkpoint_format.decode(data)
            except checkpoint_format.UnreadableRecord as error:
                skipped[str(error)] += 1
                continue
            if stored == key:
                found[key] = result
        _report_skipped(self.instance_id, skipped)
        return found


class CheckpointJournal:
    """One task run's checkpoints: each finished item's record appended with a single `write`.

    On an object store (`RemoteFileSystem`) records go in segments, written at
    most `SEGMENT_SECONDS` after an item finished and when the journal closes,
    which raises when the last segment cannot be stored. On other storage
    without append each record is its own object. On a folder and those,
    `append` returns only once the record is stored, and raises when it cannot be.
    """

    def __init__(self, store: CheckpointStore, name: str) -> None:
        self.store = store
        self.name = name
        self._descriptor: int | None = None
        self._pending: list[bytes] = []
        self._pending_since = 0.0
        self._note = current_note()
        self._span: WrittenSpan | None = None
        """Where this journal's records landed, for the stage's note (src/fanout/storage/written.py)."""

    def append(self, key: str, result: Any) -> None:
        """Checkpoint `key` now (on an object store: in the next segment, at most `SEGMENT_SECONDS` from now)."""
        line = checkpoint_format.encode(key, result)
        descriptor = self._descriptor
        if descriptor is None:
            descriptor = self._opened(key, result, line)
            if descriptor is None:
                return
        written = os.write(descriptor, line)
        if written != len(line):  # a full disk: the rest of the line would land apart from its start
            self._span = None
            raise OSError(f"checkpoint of {key!r} cut short ({written} of {len(line)} bytes written)")
        if self._span is not None:
            self._span.keys.append(key)
            self._span.lengths.append(written)

    def _opened(self, key: str, result: Any, line: bytes) -> int | None:
        """The journal's file, opened for appending on first use (local folders); elsewhere None, once
        the record is pending for a segment (object stores) or written as an object of its own."""
        if self.store.segmented:
            self._pend(line)
            return None
        if self.store.folder is None:
            self.store.write_record(key, result)
            return None
        path = os.path.join(self.store.prepare_folder(), self.name)
        self._descriptor = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        if self._note is not None:
            self._span = WrittenSpan(os.fstat(self._descriptor).st_size)
        return self._descriptor

    def _pend(self, line: bytes) -> None:
        """Keep a record for the next segment; write the segment once its oldest record is old enough.

        A segment that cannot be written yet stays pending for the next try: the
        items it holds are already counted as finished, so only the last write,
        when the task run ends, may fail them (by failing the task run).
        """
        if not self._pending:
            self._pending_since = time.monotonic()
        self._pending.append(line)
        if time.monotonic() - self._pending_since >= SEGMENT_SECONDS:
            try:
                self.flush()
            except Exception as error:  # noqa: BLE001 - tried again with the next record and at the end
                logger.warning("checkpoint segment of %s not written yet: %s", self.store.instance_id, error)

    def flush(self) -> None:
        """Write the pending records as one segment (object stores); raises when storage refuses it."""
        if self._pending:
            self.store.write_segment(self.name, self._pending)
            self._pending = []

    def close(self) -> None:
        self.flush()
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None
        if self._note is not None and self._span is not None and self._span.keys:
            self._note.add(self.name, self._span)
        self._span = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _report_skipped(instance_id: str, skipped: Counter[str]) -> None:
    """Say which records were not read and why: in the run's log (the UI) inside a run, else this module's."""
    if not skipped:
        return
    try:
        log: Any = get_run_logger()
    except MissingContextError:
        log = logger
    for reason, count in skipped.items():
        log.warning(
            "instance %s: %d checkpoint record(s) skipped, %s; those items run again", instance_id, count, reason
        )


def _local_folder(storage: WritableFileSystem, prefix: str) -> str | None:
    """The absolute folder of `prefix` when storage is a local folder (appendable), else None."""
    if not isinstance(storage, LocalFileSystem):
        return None
    return str(Path(storage.basepath or ".").expanduser().resolve() / prefix)

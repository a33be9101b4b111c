"""One instance's results as the results API and `fanout results` read them: plan, checkpoints, failures.

The writer side (`record_plan`, `record_failures`) is called by the flow; the
reader side (`InstanceResults`) by the webhook and the CLI, in other processes,
while the run goes on or after it ended. Only local result folders are read
here (`FANOUT_RESULT_STORAGE`, or Prefect's default local storage).

Finding a page's results must not decode every checkpoint of a large run
(100,000 records: ~0.5 s with checksums and JSON). A record's body is
canonical JSON with sorted keys, `{"key":<key>,"result":<result>}`
(flows/checkpoint_format.py), so the key is the first member: one regular
expression scan over a journal finds every line's JSON-encoded key, compared
with the page's keys encoded the same way, and only the page's own records are
decoded, checksum and all, by `checkpoint_format.decode`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

from flows import checkpoint_format
from flows.checkpoints import JOURNAL_PREFIX, KEY_ROOT, instance_prefix, item_digest
from flows.errors import CheckpointNotWritten
from flows.outcome import ItemOutcome
from flows.results import PLAN_FILE, NoResults, ResultsPage, read_page, read_plan, write_plan

PLAN_META = "plan.json"
FAILURES_FILE = "failures.jsonl"
KEY_HEAD = b'{"key":"'
RECORD_KEY = re.compile(rb'^fanout-checkpoint/1 [0-9a-f]{64} \{"key":("(?:[^"\\\n]|\\.)*"),', re.M)
"""A version-1 record's key, still JSON-encoded: the body's first member (keys sorted, no whitespace)."""


def local_root(storage: object) -> str | None:
    """The absolute folder of a local result storage block, or None for remote storage."""
    from prefect.filesystems import LocalFileSystem

    if not isinstance(storage, LocalFileSystem):
        return None
    return os.path.realpath(os.path.expanduser(storage.basepath or "."))


def instance_folder(storage_root: str, instance_id: str) -> str:
    """`<storage>/fanout/<instance>`: where an instance's plan and failures live."""
    return os.path.join(storage_root, KEY_ROOT, instance_id)


def record_plan(storage_root: str, instance_id: str, processor: str, keys: Sequence[str]) -> None:
    """Write the run's plan (keys in order, processor) before any item starts."""
    folder = instance_folder(storage_root, instance_id)
    write_plan(folder, keys)
    meta = {"version": 1, "processor": processor, "total": len(keys)}
    partial = os.path.join(folder, f"{PLAN_META}.{os.getpid()}.partial")
    with open(partial, "w", encoding="utf-8") as target:
        json.dump(meta, target)
    os.replace(partial, os.path.join(folder, PLAN_META))


def record_failures(storage_root: str, instance_id: str, failures: Mapping[str, str]) -> None:
    """Replace the instance's failures with this run's: `{key: last error}` of every item it gave up on."""
    folder = instance_folder(storage_root, instance_id)
    os.makedirs(folder, exist_ok=True)
    partial = os.path.join(folder, f"{FAILURES_FILE}.{os.getpid()}.partial")
    with open(partial, "w", encoding="utf-8") as target:
        target.writelines(json.dumps({"key": key, "error": error}) + "\n" for key, error in failures.items())
    os.replace(partial, os.path.join(folder, FAILURES_FILE))


def keep_plan(storage: object, instance_id: str, processor: str, keys: Sequence[str]) -> None:
    """`record_plan` in a local result folder; remote storage has no results pages yet (nothing kept).

    Storage that refuses the plan would refuse every checkpoint too: the run fails here, before
    any item runs, with `CheckpointNotWritten` naming the storage error.
    """
    root = local_root(storage)
    if root is not None:
        try:
            record_plan(root, instance_id, processor, keys)
        except OSError as error:
            raise CheckpointNotWritten(f"storage refused the run's plan: {error}") from error


def keep_failures(storage: object, instance_id: str, outcomes: Iterable[ItemOutcome]) -> None:
    """`record_failures` of the failed `outcomes`, in a local result folder."""
    root = local_root(storage)
    if root is not None:
        record_failures(
            root, instance_id, {outcome.item: outcome.error or "" for outcome in outcomes if not outcome.ok}
        )


class InstanceResults:
    """Pages of one instance's results, read from its local result folder."""

    def __init__(self, storage_root: str, instance_id: str) -> None:
        self.folder = instance_folder(storage_root, instance_id)
        try:
            with open(os.path.join(self.folder, PLAN_META), encoding="utf-8") as meta:
                self.processor: str = json.load(meta)["processor"]
        except (FileNotFoundError, KeyError, ValueError):
            raise NoResults(f"no results recorded for instance {instance_id!r}") from None
        self.checkpoints = os.path.join(storage_root, instance_prefix(instance_id, self.processor))

    def keys(self) -> list[str]:
        """The plan's keys in item order."""
        return read_plan(self.folder)

    def failures(self) -> dict[str, str]:
        """`{key: last error}` of the items the last settled run gave up on."""
        try:
            with open(os.path.join(self.folder, FAILURES_FILE), encoding="utf-8") as lines:
                return {row["key"]: row["error"] for row in map(json.loads, lines)}
        except FileNotFoundError:
            return {}

    def page(self, offset: int, limit: int) -> ResultsPage:
        """Rows `offset .. offset+limit` in item order."""
        return read_page(self.keys(), offset, limit, self.finished, self.failures())

    def finished(self, keys: Collection[str]) -> dict[str, Any]:
        """Results of those `keys` that have a sound checkpoint (journals, or one object per item)."""
        wanted = {json.dumps(key, ensure_ascii=False).encode(): key for key in keys}
        found: dict[str, Any] = {}
        for name in self._journals():
            data = _read(os.path.join(self.checkpoints, name))
            for match in RECORD_KEY.finditer(data):  # one C-level scan: every line's key, no line split
                key = wanted.get(match.group(1))
                if key is None or key in found:
                    continue
                end = data.find(b"\n", match.end())
                if end < 0:
                    continue  # a line cut short by a crash
                line = data[data.rfind(b"\n", 0, match.start()) + 1 : end]
                try:
                    found[key] = checkpoint_format.decode(line)[1]
                except checkpoint_format.UnreadableRecord:
                    continue
        for key in set(wanted.values()) - found.keys():
            path = os.path.join(self.checkpoints, item_digest(key))
            if os.path.exists(path):
                try:
                    found[key] = checkpoint_format.decode(_read(path))[1]
                except checkpoint_format.UnreadableRecord:
                    continue
        return found

    def _journals(self) -> list[str]:
        try:
            return sorted(name for name in os.listdir(self.checkpoints) if name.startswith(JOURNAL_PREFIX))
        except FileNotFoundError:
            return []

    def rows(self, batch: int = 1000) -> Iterable[dict[str, Any]]:
        """Every row in item order, a page at a time (for `fanout results`)."""
        offset: int | None = 0
        while offset is not None:
            page = self.page(offset, batch)
            yield from (page_row for page_row in page.document()["items"])
            offset = page.next


def peek_key(line: bytes) -> str | None:
    """The key a record line claims, read from the head of its body without checking it, or None."""
    first = line.find(b" ")
    start = line.find(b" ", first + 1) + 1
    if first < 0 or start <= 0 or not line.startswith(KEY_HEAD, start):
        return None
    try:
        text = line[start + len(KEY_HEAD) : start + len(KEY_HEAD) + 8192].decode("utf-8", "replace")
        key, _ = scanstring(text, 0, True)
    except ValueError:
        return None
    return str(key)


def _lines(path: str) -> list[bytes]:
    try:
        with open(path, "rb") as journal:
            return journal.read().split(b"\n")[:-1]
    except FileNotFoundError:
        return []


def _read(path: str) -> bytes:
    with open(path, "rb") as record:
        return record.read()


__all__ = ["PLAN_FILE", "InstanceResults", "NoResults", "peek_key", "record_failures", "record_plan"]

"""Deleting everything one instance keeps in result storage: its checkpoints, output records, plan and failures.

All of it sits under `fanout/<instance_id>/`, so a purge deletes that prefix, on a local folder or
through a remote block's fsspec file system. Other block types have no generic delete, and the
purge report then says nothing was known to be deleted.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem

from fanout.core.prefect_adapter import remote_block_files
from fanout.inputs.request import INSTANCE_ID_PATTERN
from fanout.storage.checkpoints import JOURNAL_PREFIX, KEY_ROOT, OUTPUT_PREFIX

RECORD_NAME = re.compile(r"^[0-9a-f]{40}$")
"""A one-record object's name: the digest of its item key (flows/checkpoints.item_digest)."""


@dataclass(frozen=True)
class StorageDeleted:
    """What purging one instance removed from result storage."""

    checkpoints: int = 0
    outputs: int = 0
    files: int = 0


def instance_root(instance_id: str) -> str:
    """`fanout/<instance_id>`: the prefix holding everything of the instance; refuses ids that could
    name another folder (the instance-id pattern allows no `/` and no leading `.`)."""
    if not re.match(INSTANCE_ID_PATTERN, instance_id):
        raise ValueError(f"not an instance id: {instance_id!r}")
    return f"{KEY_ROOT}/{instance_id}"


def delete_instance(storage: WritableFileSystem, instance_id: str) -> StorageDeleted | None:
    """Delete the instance's records from `storage` and say what went; None for a block type this
    cannot delete from."""
    prefix = instance_root(instance_id)
    if isinstance(storage, LocalFileSystem):
        return _delete_local(Path(storage.basepath or ".").expanduser().resolve() / prefix)
    if isinstance(storage, RemoteFileSystem):
        return _delete_remote(storage, prefix)
    return None


def _delete_local(folder: Path) -> StorageDeleted:
    if not folder.is_dir():
        return StorageDeleted()
    counted = StorageDeleted()
    for parent, _, names in os.walk(folder):
        for name in names:
            counted = _count(counted, name, Path(parent, name).read_bytes() if _is_journal(name) else b"")
    shutil.rmtree(folder)
    return counted


def _delete_remote(storage: RemoteFileSystem, prefix: str) -> StorageDeleted:
    filesystem, root, paths = remote_block_files(storage, prefix)
    journals = [path for path in paths if _is_journal(path.rsplit("/", 1)[-1])]
    contents: dict[str, bytes] = filesystem.cat(journals, on_error="omit") if journals else {}
    counted = StorageDeleted()
    for path in paths:
        counted = _count(counted, path.rsplit("/", 1)[-1], contents.get(path, b""))
    if paths:
        filesystem.rm(root, recursive=True)
    return counted


def _is_journal(name: str) -> bool:
    return name.startswith(JOURNAL_PREFIX)


def _count(counted: StorageDeleted, name: str, journal: bytes) -> StorageDeleted:
    """`counted` plus one file named `name` (a journal's whole lines are its records)."""
    checkpoints, outputs = counted.checkpoints, counted.outputs
    if _is_journal(name):
        checkpoints += journal.count(b"\n")
    elif name.startswith(OUTPUT_PREFIX):
        outputs += 1
    elif RECORD_NAME.match(name):
        checkpoints += 1
    return StorageDeleted(checkpoints, outputs, counted.files + 1)

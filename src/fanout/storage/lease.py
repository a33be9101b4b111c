"""An instance's lease, kept where its checkpoints are: one run per instance, whoever starts it, on any
Prefect server that shares the result storage.

Under the instance's folder, `fanout/<instance>/lease/` holds numbered records, `00000001`,
`00000002`, ...; the highest number is the lease as it stands. A starter takes the lease by
creating the next number with an atomic create-if-absent (`O_CREAT | O_EXCL` in a local folder,
`open(mode="xb")` on an fsspec file system, which object stores implement as a conditional
write): of two starters that read the same number, exactly one creates the next, and the other
finds it taken and reads again.

A record names its holder (the flow run and `<host>:<pid>:<process start>`) and when it expires.
The holder rewrites its own record to renew it, every third of the lease, and marks it released
when the run ends. A record that is released, expired, unreadable, or held by a process of this
host that no longer exists, is free: the next number takes over. That holds for the same flow run
too: resumed after its process died here, it takes its lease over at once; started a second time
while its first process still works (a resume of a run that was alive), it is refused like anyone
else. Whoever takes a number deletes the ones before it.

The same create-if-absent arbitrates one-time actions (`claim_once`): the first to create a
claim's record does the action, everyone else learns it is done.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem

from fanout.core.errors import CheckpointNotWritten
from fanout.core.private_files import make_folders, open_private
from fanout.storage import checkpoint_format
from fanout.storage.checkpoints import KEY_ROOT

LEASE_FOLDER = "lease"
RECORD_KEY = "instance-lease"
NUMBER_WIDTH = 8


class LeaseTaken(Exception):
    """Another holder has the lease; `holder` says who."""

    def __init__(self, holder: LeaseRecord) -> None:
        super().__init__(f"held by flow run {holder.flow_run_id} ({holder.owner})")
        self.holder = holder


class LeaseUnsupported(TypeError):
    """The result storage is of a kind that offers no create-if-absent here."""


@dataclass(frozen=True)
class LeaseRecord:
    """One numbered record of an instance's lease."""

    number: int
    flow_run_id: str
    owner: str
    expires: float
    released: bool = False

    def free(self, now: float) -> bool:
        """Whether a new holder may take over: released, expired, or its process here is gone."""
        return self.released or now >= self.expires or owner_gone(self.owner)

    def encode(self) -> bytes:
        body = {
            "flow_run_id": self.flow_run_id,
            "owner": self.owner,
            "expires": self.expires,
            "released": self.released,
        }
        return checkpoint_format.encode(RECORD_KEY, body)

    @classmethod
    def decode(cls, number: int, data: bytes) -> LeaseRecord | None:
        try:
            key, body = checkpoint_format.decode(data)
            if key != RECORD_KEY:
                return None
            return cls(
                number, str(body["flow_run_id"]), str(body["owner"]), float(body["expires"]), bool(body["released"])
            )
        except Exception:  # noqa: BLE001 - damaged or foreign: treated as free, like an absent record
            return None


class StorageFiles:
    """The few file operations a lease needs, on a local folder or an fsspec file system."""

    def __init__(self, storage: WritableFileSystem) -> None:
        if isinstance(storage, LocalFileSystem):
            self._root: str = str(Path(storage.basepath or ".").expanduser().resolve())
            self._fs: Any = None
        elif isinstance(storage, RemoteFileSystem):
            self._root = storage._resolve_path("").rstrip("/")
            self._fs = storage.filesystem
        else:
            raise LeaseUnsupported(f"no create-if-absent on {type(storage).__name__} result storage")

    def _path(self, key: str) -> str:
        return f"{self._root}/{key}"

    def create(self, key: str, data: bytes) -> bool:
        """Create `key` holding `data` unless it exists: True when this call created it."""
        path = self._path(key)
        if self._fs is None:
            try:
                make_folders(Path(path).parent)
            except OSError as error:  # a file where a folder belongs, no permission: the records cannot be kept
                raise CheckpointNotWritten(f"storage refused the instance lease: {error}") from error
            # Written whole under a temporary name, then linked in place: `link` creates only if absent, and a
            # reader never sees the record empty (an empty record reads as free, and a racer would take it too).
            temporary = f"{path}.tmp-{uuid.uuid4().hex}"
            descriptor = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            with os.fdopen(descriptor, "wb") as target:
                target.write(data)
            try:
                os.link(temporary, path)
            except FileExistsError:
                return False
            finally:
                os.unlink(temporary)
            return True
        try:
            with self._fs.open(path, mode="xb") as target:
                target.write(data)
        except FileExistsError:
            return False
        return True

    def replace(self, key: str, data: bytes) -> None:
        """Write `key` whole: a reader sees the old bytes or the new ones, never a mix."""
        path = self._path(key)
        if self._fs is None:
            temporary = f"{path}.tmp-{uuid.uuid4().hex}"
            descriptor = open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            with os.fdopen(descriptor, "wb") as target:
                target.write(data)
            os.replace(temporary, path)
            return
        self._fs.pipe_file(path, data)  # one PUT: whole on object stores

    def read(self, key: str) -> bytes | None:
        try:
            if self._fs is None:
                return Path(self._path(key)).read_bytes()
            return bytes(self._fs.cat_file(self._path(key)))
        except (FileNotFoundError, IsADirectoryError):
            return None

    def names(self, folder: str) -> list[str]:
        """The names of the files directly in `folder` (none when it does not exist)."""
        path = self._path(folder)
        try:
            if self._fs is None:
                return os.listdir(path)
            return [str(entry).rstrip("/").rsplit("/", 1)[-1] for entry in self._fs.ls(path, detail=False)]
        except (FileNotFoundError, NotADirectoryError):
            return []

    def delete(self, key: str) -> None:
        try:
            if self._fs is None:
                os.unlink(self._path(key))
            else:
                self._fs.rm_file(self._path(key))
        except FileNotFoundError:
            pass


def lease_folder(instance_id: str) -> str:
    return f"{KEY_ROOT}/{instance_id}/{LEASE_FOLDER}"


def _record_key(instance_id: str, number: int) -> str:
    return f"{lease_folder(instance_id)}/{number:0{NUMBER_WIDTH}d}"


def current(storage: WritableFileSystem, instance_id: str) -> LeaseRecord | None:
    """The lease as it stands: its highest-numbered record, or None when it was never taken."""
    return _current(StorageFiles(storage), instance_id)


def _current(files: StorageFiles, instance_id: str) -> LeaseRecord | None:
    numbers = sorted(int(name) for name in files.names(lease_folder(instance_id)) if name.isdigit())
    if not numbers:
        return None
    number = numbers[-1]
    data = files.read(_record_key(instance_id, number))
    record = LeaseRecord.decode(number, data) if data is not None else None
    return record or LeaseRecord(number, "", "", 0.0, released=True)  # unreadable: free


def holder(storage: WritableFileSystem, instance_id: str, now: float | None = None) -> LeaseRecord | None:
    """The live holder of the instance's lease, or None when it is free."""
    record = current(storage, instance_id)
    return None if record is None or record.free(time.time() if now is None else now) else record


def take(
    storage: WritableFileSystem, instance_id: str, flow_run_id: str, lease_seconds: float, attempts: int = 20
) -> LeaseRecord:
    """Take the instance's lease for `flow_run_id`, or raise `LeaseTaken` naming its live holder."""
    files = StorageFiles(storage)
    for _ in range(attempts):
        now = time.time()
        record = _current(files, instance_id)
        if record is not None and not record.free(now) and not _own(record, flow_run_id):
            raise LeaseTaken(record)
        number = record.number + 1 if record else 1
        mine = LeaseRecord(number, flow_run_id, owner(), now + lease_seconds)
        if files.create(_record_key(instance_id, number), mine.encode()):
            for older in range(max(1, number - 3), number):  # the ones before it, as far as they may remain
                files.delete(_record_key(instance_id, older))
            return mine
    raise LeaseTaken(_current(files, instance_id) or LeaseRecord(0, "?", "?", 0.0))


def _own(record: LeaseRecord, flow_run_id: str) -> bool:
    """Held by this very flow run in this very process (an earlier stage of it): its own to take again."""
    return record.flow_run_id == flow_run_id and record.owner == owner()


def renew(storage: WritableFileSystem, instance_id: str, held: LeaseRecord, lease_seconds: float) -> LeaseRecord | None:
    """Extend a lease this run holds; None when it is no longer this run's (another number took over)."""
    files = StorageFiles(storage)
    record = _current(files, instance_id)
    if record is None or record.number != held.number:
        return None
    renewed = LeaseRecord(held.number, held.flow_run_id, held.owner, time.time() + lease_seconds)
    files.replace(_record_key(instance_id, held.number), renewed.encode())
    return renewed


def release(storage: WritableFileSystem, instance_id: str, held: LeaseRecord) -> None:
    """Mark the lease free, if it is still this run's."""
    files = StorageFiles(storage)
    record = _current(files, instance_id)
    if record is not None and record.number == held.number:
        freed = LeaseRecord(held.number, held.flow_run_id, held.owner, held.expires, released=True)
        files.replace(_record_key(instance_id, held.number), freed.encode())


def claim_once(storage: WritableFileSystem, key: str, note: dict[str, Any]) -> bool:
    """Create the claim `key` (a path under the storage's root): True for the one caller that created it."""
    return StorageFiles(storage).create(key, json.dumps({**note, "owner": owner(), "at": time.time()}).encode())


def owner() -> str:
    """This process as a lease names it: `<host>:<pid>:<process start>` (the start tells a reused pid apart)."""
    return f"{socket.gethostname()}:{os.getpid()}:{process_start(os.getpid())}"


def process_start(pid: int) -> str:
    """When the process started, in clock ticks since boot (Linux); empty where /proc is not there."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def owner_gone(holder_owner: str) -> bool:
    """Whether the owner is a process of this host that no longer exists (killed, or the host restarted)."""
    host, _, rest = holder_owner.partition(":")
    pid, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return bool(started) and process_start(int(pid)) not in ("", started)

"""The storage lease against real processes: a holder whose process died on this host is gone."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem

from fanout.storage import lease
from fanout.storage.lease import owner_gone


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> WritableFileSystem:
    """A local folder (O_EXCL) and an fsspec file system (open mode "xb"), the two kinds of storage."""
    if request.param == "local":
        return LocalFileSystem(basepath=str(tmp_path))
    return RemoteFileSystem(basepath=f"memory://lease-{uuid.uuid4().hex}")


def dead_pid() -> str:
    """The pid of a process that has ended."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return child.stdout.strip()


def test_the_same_flow_run_resumed_after_its_process_died_takes_its_lease_over(storage: WritableFileSystem) -> None:
    """A run back after its process on this host died takes over the lease its first attempt left."""
    first = lease.take(storage, "inst", "their-run", 60)
    dead = lease.LeaseRecord(first.number, "their-run", f"{socket.gethostname()}:{dead_pid()}:1", first.expires)
    lease.StorageFiles(storage).replace(f"fanout/inst/lease/{first.number:08d}", dead.encode())
    again = lease.take(storage, "inst", "their-run", 60)
    assert again.number == first.number + 1 and lease.holder(storage, "inst") == again


def test_a_process_that_exited_on_this_host_is_gone() -> None:
    """A holder whose process ended (as after kill -9, or a restart of the host) is gone."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    assert owner_gone(f"{socket.gethostname()}:{child.stdout.strip()}:1") is True

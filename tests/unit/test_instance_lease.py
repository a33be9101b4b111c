"""The instance lease in result storage: who may take it, and when a run is refused (src/fanout/storage/lease.py,
src/fanout/engine/instance_lease.py)."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem, RemoteFileSystem, WritableFileSystem

from fanout.engine import instance_lease
from fanout.engine.instance_lease import InstanceBusy, _take
from fanout.storage import lease
from fanout.storage.lease import LeaseTaken, owner, owner_gone

ELSEWHERE = f"not-{socket.gethostname()}:1:1"


@pytest.fixture(params=["local", "memory"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> WritableFileSystem:
    """A local folder (O_EXCL) and an fsspec file system (open mode "xb"), the two kinds of storage."""
    if request.param == "local":
        return LocalFileSystem(basepath=str(tmp_path))
    return RemoteFileSystem(basepath=f"memory://lease-{uuid.uuid4().hex}")


def held_elsewhere(storage: WritableFileSystem, seconds: float = 60) -> lease.LeaseRecord:
    """The lease taken by a run on another host, as a starter there would leave it."""
    record = lease.take(storage, "inst", "their-run", seconds)
    files = lease.StorageFiles(storage)
    foreign = lease.LeaseRecord(record.number, "their-run", ELSEWHERE, record.expires)
    files.replace(f"fanout/inst/lease/{record.number:08d}", foreign.encode())
    return foreign


def test_the_first_run_takes_the_lease_and_is_its_holder(storage: WritableFileSystem) -> None:
    """A free instance's lease goes to the run that asks, recorded with its process."""
    taken = lease.take(storage, "inst", "run-1", 60)
    assert lease.holder(storage, "inst") == taken and taken.owner == owner()


def test_a_second_run_is_refused_while_the_first_holds_it(storage: WritableFileSystem) -> None:
    """Another flow run finds the lease held by a live holder and is told whose it is."""
    held_elsewhere(storage)
    with pytest.raises(LeaseTaken, match="their-run"):
        lease.take(storage, "inst", "run-2", 60)


def test_the_engine_refuses_a_busy_instance_with_instance_busy(storage: WritableFileSystem) -> None:
    """The flow's lease step turns a held lease into InstanceBusy naming the holding run."""
    held_elsewhere(storage)
    with pytest.raises(InstanceBusy, match="inst is already running as flow run their-run"):
        _take(storage, "inst", "run-2", 60)


class EndsWhenWaitedFor(logging.Handler):
    """The first attempt of a run: it ends (releases its lease) once the second attempt says it waits."""

    def __init__(self, storage: WritableFileSystem, first: lease.LeaseRecord) -> None:
        super().__init__(logging.WARNING)
        self.storage, self.first, self.waits = storage, first, 0

    def emit(self, record: logging.LogRecord) -> None:
        if "waiting for it to end" in record.getMessage():
            self.waits += 1
            lease.release(self.storage, "inst", self.first)


def test_a_second_attempt_of_a_live_run_waits_for_the_first_to_end(
    storage: WritableFileSystem, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same flow run started again while its first process works waits, then takes the lease."""
    first_attempt = EndsWhenWaitedFor(storage, held_elsewhere(storage))
    monkeypatch.setattr(instance_lease.logger, "handlers", [first_attempt])
    again = _take(storage, "inst", "their-run", 60, poll=0.01)
    assert first_attempt.waits == 1
    assert again is not None and again.number == first_attempt.first.number + 1


def test_a_released_lease_is_free(storage: WritableFileSystem) -> None:
    """After the holder releases it, nobody holds it and the next run takes it."""
    taken = lease.take(storage, "inst", "run-1", 60)
    lease.release(storage, "inst", taken)
    assert lease.holder(storage, "inst") is None
    assert lease.take(storage, "inst", "run-2", 60).flow_run_id == "run-2"


def test_an_expired_lease_is_taken_over(storage: WritableFileSystem) -> None:
    """A holder elsewhere that stopped renewing loses the lease once it expires."""
    held_elsewhere(storage, seconds=-1)
    assert lease.take(storage, "inst", "run-2", 60).flow_run_id == "run-2"


def test_renewing_pushes_the_expiry_back(storage: WritableFileSystem) -> None:
    """The holder's renewal extends its lease; another run is still refused."""
    taken = lease.take(storage, "inst", "run-1", 60)
    renewed = lease.renew(storage, "inst", taken, 600)
    assert renewed is not None and renewed.expires > taken.expires + 500


def test_a_lease_taken_over_cannot_be_renewed_by_its_old_holder(storage: WritableFileSystem) -> None:
    """Once another run took the next number, the old holder's renewal says so (None) and writes nothing."""
    old = lease.take(storage, "inst", "run-1", -1)
    new = lease.take(storage, "inst", "run-2", 60)
    assert lease.renew(storage, "inst", old, 60) is None and lease.holder(storage, "inst") == new


def test_of_many_racing_starters_exactly_one_takes_the_lease(storage: WritableFileSystem) -> None:
    """Twenty threads ask at once for a free lease: one gets it, nineteen are refused."""
    winners: list[str] = []
    refused: list[str] = []
    barrier = threading.Barrier(20)

    def start(name: str) -> None:
        barrier.wait()
        try:
            lease.take(storage, "inst", name, 60)
            winners.append(name)
        except LeaseTaken:
            refused.append(name)

    threads = [threading.Thread(target=start, args=(f"run-{index}",)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1 and len(refused) == 19


def test_a_damaged_record_counts_as_free(tmp_path: Path) -> None:
    """A record that fails its checksum names nobody: the next run takes the lease."""
    storage = LocalFileSystem(basepath=str(tmp_path))
    lease.take(storage, "inst", "run-1", 60)
    record = tmp_path / "fanout" / "inst" / "lease" / "00000001"
    record.write_bytes(record.read_bytes().replace(b"run-1", b"run-x"))
    assert lease.holder(storage, "inst") is None


def test_lease_files_are_private(tmp_path: Path) -> None:
    """The lease record is readable by its owner alone."""
    lease.take(LocalFileSystem(basepath=str(tmp_path)), "inst", "run-1", 60)
    assert (tmp_path / "fanout" / "inst" / "lease" / "00000001").stat().st_mode & 0o077 == 0


def test_claim_once_is_granted_to_one_caller(storage: WritableFileSystem) -> None:
    """The first claim of a key wins; a repeat is refused."""
    assert lease.claim_once(storage, "fanout/inst/resumes/a", {"why": "test"}) is True
    assert lease.claim_once(storage, "fanout/inst/resumes/a", {"why": "test"}) is False


def test_this_process_is_not_gone() -> None:
    """The owner recorded by this very process is alive."""
    assert owner_gone(owner()) is False


def test_a_reused_pid_is_told_apart_by_its_start_time() -> None:
    """A live process with the holder's pid but another start time is not the holder."""
    assert owner_gone(f"{socket.gethostname()}:{os.getpid()}:1") is True


def test_a_holder_on_another_host_is_trusted() -> None:
    """A holder elsewhere cannot be checked, so it keeps its lease until it lapses."""
    assert owner_gone(ELSEWHERE) is False


def test_a_later_stage_of_the_same_run_in_the_same_process_takes_the_lease_again(storage: WritableFileSystem) -> None:
    """The flow run's own lease, held by this process from an earlier stage, is taken again at once."""
    first = lease.take(storage, "inst", "run-1", 60)
    again = lease.take(storage, "inst", "run-1", 60)
    assert again.number == first.number + 1

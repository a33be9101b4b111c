"""Who holds an instance's lease, and when a run may take it over (src/fanout/engine/instance_lease.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
from prefect.filesystems import LocalFileSystem
from prefect.states import Completed, Running

from fanout.engine.instance_lease import Holder, InstanceBusy, _take, _write_holder, read_holder

DEAD_PID = 2**22 + 1  # above Linux's pid_max: no process has it


class LeaseApi:
    """Prefect's concurrency API for one instance's one-slot limit: leases, their holders and their runs."""

    def __init__(self, runs: dict[UUID, Any] | None = None) -> None:
        self.active: set[UUID] = set()
        self.released: list[UUID] = []
        self.runs = runs or {}

    def create_global_concurrency_limit(self, limit: object) -> None:
        pass

    def increment_concurrency_slots_with_lease(self, **kwargs: object) -> Any:
        if self.active:
            response = SimpleNamespace(status_code=423)
            raise PrefectHTTPStatusError("locked", request=None, response=response)  # type: ignore[arg-type]
        lease = uuid4()
        self.active.add(lease)
        return SimpleNamespace(json=lambda: {"lease_id": str(lease)})

    def release_concurrency_slots_with_lease(self, lease_id: UUID) -> None:
        self.released.append(lease_id)
        self.active.discard(lease_id)

    def read_flow_run(self, run_id: UUID) -> Any:
        if run_id not in self.runs:
            raise ObjectNotFound(http_exc=Exception("gone"))
        return self.runs[run_id]

    def read_flow_runs(self, **kwargs: object) -> list[Any]:
        return [run for run in self.runs.values() if run.state.is_running()]

    def update_flow_run(self, run_id: UUID, tags: list[str]) -> None:
        pass


def storage(folder: Path) -> LocalFileSystem:
    return LocalFileSystem(basepath=str(folder))


def run(state: Any, run_id: UUID | None = None) -> Any:
    return SimpleNamespace(id=run_id or uuid4(), state=state, tags=["fanout.instance:inst"])


def held_by(api: LeaseApi, folder: Path, holder_run: UUID, owner: str) -> UUID:
    """The instance's slot taken by `holder_run`, recorded as such."""
    lease = UUID(api.increment_concurrency_slots_with_lease().json()["lease_id"])
    _write_holder(storage(folder), "inst", Holder(holder_run, lease, owner))
    return lease


def test_a_run_that_takes_the_lease_is_recorded_as_its_holder(tmp_path: Path) -> None:
    """After taking the slot, the instance's record names this run, its lease and its process."""
    me = run(Running())
    api = LeaseApi({me.id: me})
    lease = _take(api, storage(tmp_path), "inst", me.id, 60)  # type: ignore[arg-type]
    assert read_holder(storage(tmp_path), "inst") == Holder(me.id, lease, f"{socket.gethostname()}:{os.getpid()}")


def test_a_resumed_run_releases_the_lease_its_crashed_attempt_left(tmp_path: Path) -> None:
    """The same flow run, back after a crash, frees its own old lease and takes a new one."""
    me = run(Running())
    api = LeaseApi({me.id: me})
    old = held_by(api, tmp_path, me.id, "elsewhere:1")
    new = _take(api, storage(tmp_path), "inst", me.id, 60)  # type: ignore[arg-type]
    assert api.released == [old] and new != old


def test_a_lease_whose_holder_ended_is_taken_over(tmp_path: Path) -> None:
    """A holder in a final state ended without releasing: its lease goes, this run takes the slot."""
    ended, me = run(Completed()), run(Running())
    api = LeaseApi({ended.id: ended, me.id: me})
    old = held_by(api, tmp_path, ended.id, "elsewhere:1")
    _take(api, storage(tmp_path), "inst", me.id, 60)  # type: ignore[arg-type]
    assert api.released == [old] and read_holder(storage(tmp_path), "inst").flow_run_id == me.id  # type: ignore[union-attr]


def test_a_lease_whose_process_died_on_this_host_is_taken_over(tmp_path: Path) -> None:
    """A holder still Running whose process on this host is gone (kill -9) cannot be working."""
    killed, me = run(Running()), run(Running())
    api = LeaseApi({killed.id: killed, me.id: me})
    old = held_by(api, tmp_path, killed.id, f"{socket.gethostname()}:{DEAD_PID}")
    _take(api, storage(tmp_path), "inst", me.id, 60)  # type: ignore[arg-type]
    assert api.released == [old]


def test_a_live_holder_keeps_the_lease_and_the_run_is_refused_naming_it(tmp_path: Path) -> None:
    """A holder that may be working keeps its slot: InstanceBusy names its run, and the record stays its own."""
    working, me = run(Running()), run(Running())
    api = LeaseApi({working.id: working, me.id: me})
    held_by(api, tmp_path, working.id, f"not-{socket.gethostname()}:1")
    with pytest.raises(InstanceBusy, match=f"inst is already running as flow run {working.id}"):
        _take(api, storage(tmp_path), "inst", me.id, 60)  # type: ignore[arg-type]
    assert api.released == [] and read_holder(storage(tmp_path), "inst").flow_run_id == working.id  # type: ignore[union-attr]


def test_a_damaged_holder_record_counts_as_none(tmp_path: Path) -> None:
    """A record that fails its checksum names nobody (the lease then lapses on its own)."""
    _write_holder(storage(tmp_path), "inst", Holder(uuid4(), uuid4(), "h:1"))
    path = tmp_path / "fanout" / "inst" / "instance-lease"
    path.write_bytes(path.read_bytes().replace(b"h:1", b"h:2"))
    assert read_holder(storage(tmp_path), "inst") is None

"""One active run per instance, however it was started: the run holds its instance's lease while it works.

The webhook refuses a second start of a busy instance, but a run can also come
from `fanout run`, `prefect deployment run`, the event trigger or a restart. So
the flow itself takes the one slot of a Prefect global concurrency limit named
`fanout-instance:<id>` (limit 1, created on first use) with a lease, before any
item runs, and keeps renewing the lease while it works. A second run of the
instance finds the slot taken and fails at once with `InstanceBusy`, naming
the run that holds it; nothing of it ran.

A crashed run's lease must not block its own resume: the holder of the lease
(flow run, lease id, `<host>:<pid>`) is recorded in the instance's folder of
result storage (`fanout/<instance>/instance-lease`, a checksummed record like
the checkpoints, where every worker of the instance reads), and a run that finds
itself there (the same flow run id, resumed) releases that lease before taking
a new one. A holder that is certainly dead (its run ended, or its process on this host is
gone, as after `kill -9` of `fanout run`) has its lease released by the next run of the
instance; any other dead holder's lease lapses after `FANOUT_INSTANCE_LEASE_SECONDS`
(Prefect's minimum is 60 s).
"""

from __future__ import annotations

import functools
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import ConcurrencyLeaseHolder, FlowRun, StateType
from prefect.context import FlowRunContext
from prefect.exceptions import (
    ObjectAlreadyExists,
    ObjectNotFound,
    PrefectHTTPStatusError,
)
from prefect.runtime import flow_run

from fanout.core.errors import InvalidRequest
from fanout.core.prefect_adapter import read_block_path, write_block_path
from fanout.core.wrap_up import after_final_state
from fanout.storage import checkpoint_format
from fanout.storage.checkpoints import KEY_ROOT

if TYPE_CHECKING:
    from prefect.filesystems import WritableFileSystem

LIMIT_PREFIX = "fanout-instance:"
INSTANCE_TAG_PREFIX = "fanout.instance:"
"""The tag the webhook gives an instance's runs (src/fanout/service/runs.py), which the status API finds them by."""
HOLDER_RECORD = "instance-lease"
"""The record, in the instance's folder of result storage, of who took its lease last (`Holder`)."""
LOCKED = 423


class InstanceBusy(InvalidRequest):
    """Another run of the same instance holds its lease; this run did nothing."""


def limit_name(instance_id: str) -> str:
    return f"{LIMIT_PREFIX}{instance_id}"


@contextmanager
def holding_instance(instance_id: str | None, lease_seconds: float, storage: WritableFileSystem) -> Iterator[None]:
    """Hold the instance's lease for the block; `InstanceBusy` when another run holds it.

    No instance id (it defaults to the flow run's own, which nothing else can share): no lease.
    """
    run_id = flow_run.get_id()
    if instance_id is None or run_id is None:
        yield
        return
    with get_client(sync_client=True) as client:
        lease_id = _take(client, storage, instance_id, UUID(run_id), lease_seconds)
        stop = threading.Event()
        renewing = threading.Thread(
            target=_renew, args=(client, lease_id, lease_seconds, stop), name="fanout-instance-lease", daemon=True
        )
        renewing.start()
        stopped: BaseException | None = None
        try:
            yield
        except BaseException as error:
            stopped = error
            raise
        finally:
            stop.set()
            after_final_state(functools.partial(_give_back, lease_id), stopped=stopped)


def _take(
    client: SyncPrefectClient, storage: WritableFileSystem, instance_id: str, run_id: UUID, lease_seconds: float
) -> UUID:
    """The lease of the instance's one slot, after releasing one this same run left behind when it crashed,
    or one a dead run still holds."""
    name = limit_name(instance_id)
    with suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    holder = read_holder(storage, instance_id)
    if holder is not None and holder.flow_run_id == run_id:
        client.release_concurrency_slots_with_lease(holder.lease_id)  # this run's own, from before its crash
    try:
        response = _increment(client, name, run_id, lease_seconds)
    except InstanceBusy:
        try:
            if holder is None or holder.flow_run_id == run_id or not _dead(client, holder):
                raise
            client.release_concurrency_slots_with_lease(holder.lease_id)
            response = _increment(client, name, run_id, lease_seconds)
        except InstanceBusy:
            raise InstanceBusy(
                f"instance {instance_id} is already running{_holder(client, instance_id, run_id)}"
            ) from None
    lease_id = UUID(response.json()["lease_id"])
    _write_holder(storage, instance_id, Holder(run_id, lease_id, _owner()))
    me = _this_run(client, run_id)
    tag = f"{INSTANCE_TAG_PREFIX}{instance_id}"
    if tag not in me.tags:  # a run not started by the webhook: make it findable by its instance id
        client.update_flow_run(run_id, tags=[*me.tags, tag])
    return lease_id


@dataclass(frozen=True)
class Holder:
    """Who took the instance's lease last: its flow run, the lease, and `<host>:<pid>` of its process."""

    flow_run_id: UUID
    lease_id: UUID
    owner: str


def holder_path(instance_id: str) -> str:
    """Where the instance's lease holder is recorded under the storage's root."""
    return f"{KEY_ROOT}/{instance_id}/{HOLDER_RECORD}"


def read_holder(storage: WritableFileSystem, instance_id: str) -> Holder | None:
    """The instance's last lease holder, or None when none is recorded (or the record is unreadable)."""
    try:
        key, data = checkpoint_format.decode(read_block_path(storage, holder_path(instance_id)))
        if key != HOLDER_RECORD:
            return None
        return Holder(UUID(data["flow_run_id"]), UUID(data["lease_id"]), str(data["owner"]))
    except Exception:  # noqa: BLE001 - missing (each block raises its own kind) or damaged: no holder known
        return None


def _write_holder(storage: WritableFileSystem, instance_id: str, holder: Holder) -> None:
    """Record the holder: a local write in place of a flow-run labels update (an API write that reads
    the run first, which SQLite refuses while other writes land, and which held up every run's start)."""
    record = {"flow_run_id": str(holder.flow_run_id), "lease_id": str(holder.lease_id), "owner": holder.owner}
    write_block_path(storage, holder_path(instance_id), checkpoint_format.encode(HOLDER_RECORD, record))


def _this_run(client: SyncPrefectClient, run_id: UUID) -> FlowRun:
    """This flow run with its tags: the copy Prefect's engine read when the run started (one API call
    less on every run), else read now."""
    context = FlowRunContext.get()
    if context is not None and context.flow_run is not None and context.flow_run.id == run_id:
        return context.flow_run
    return client.read_flow_run(run_id)


def _increment(client: SyncPrefectClient, name: str, run_id: UUID, lease_seconds: float) -> Any:
    try:
        return client.increment_concurrency_slots_with_lease(
            names=[name],
            slots=1,
            mode="concurrency",
            lease_duration=lease_seconds,
            holder=ConcurrencyLeaseHolder(type="flow_run", id=run_id),
        )
    except PrefectHTTPStatusError as error:
        if error.response.status_code != LOCKED:
            raise
        raise InstanceBusy(name) from None


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _dead(client: SyncPrefectClient, holder: Holder) -> bool:
    """Whether the holder's run cannot be working any more: its run is gone or in a final state (it
    ended without releasing), or it ran in a process of this host that no longer exists (killed:
    `fanout run` after a `kill -9` must not wait out the lease). A holder elsewhere is trusted
    until its lease lapses."""
    try:
        run = client.read_flow_run(holder.flow_run_id)
    except ObjectNotFound:
        return True
    return (run.state is not None and run.state.is_final()) or _dead_here(holder.owner)


def _dead_here(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _give_back(lease_id: UUID) -> None:
    """Release the lease once the run's final state is recorded (src/fanout/core/wrap_up.py), which this write
    would otherwise hold back; the lease, no longer renewed, is good for a while yet."""
    with get_client(sync_client=True) as client:
        _release(client, lease_id)


def _release(client: SyncPrefectClient, lease_id: UUID) -> None:
    """Give the slot back; if the API cannot be reached the lease lapses on its own (logged, not raised).

    The run's lease label is left as it is: releasing a lease that is gone does
    nothing, and one less labels update (a read-then-write that SQLite may refuse
    with a 503 while other writes land) keeps it off the end of every run.
    """
    try:
        client.release_concurrency_slots_with_lease(lease_id)
    except Exception as error:  # noqa: BLE001 - the run's own outcome must not be replaced by this
        get_run_logger().warning("instance lease %s not released (it lapses on its own): %r", lease_id, error)


def _holder(client: SyncPrefectClient, instance_id: str, run_id: UUID) -> str:
    """` as flow run <id>` for the instance's other active run, if it can be named."""
    active = FlowRunFilterStateType(any_=[StateType.RUNNING, StateType.PENDING, StateType.CANCELLING])
    flow_runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            tags=FlowRunFilterTags(all_=[f"{INSTANCE_TAG_PREFIX}{instance_id}"]), state=FlowRunFilterState(type=active)
        ),
        limit=5,
    )
    others = [str(run.id) for run in flow_runs if run.id != run_id]
    return f" as flow run {others[0]}" if others else " (another run holds its lease)"


def _renew(client: SyncPrefectClient, lease_id: UUID, lease_seconds: float, stop: threading.Event) -> None:
    """Renew the lease every third of its duration until `stop`; a lost lease is left to expire.

    It shares the run's client (its connection pool is thread-safe): a client of its own
    would cost each run another TLS context, 20-40 ms of CPU, even against a plain-HTTP API.
    """
    while not stop.wait(lease_seconds / 3):
        try:
            client.renew_concurrency_lease(lease_id, lease_duration=lease_seconds)
        except (ObjectNotFound, PrefectHTTPStatusError):
            return

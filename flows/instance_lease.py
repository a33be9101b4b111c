"""One active run per instance, however it was started: the run holds its instance's lease while it works.

The webhook refuses a second start of a busy instance, but a run can also come
from `fanout run`, `prefect deployment run`, the event trigger or a restart. So
the flow itself takes the one slot of a Prefect global concurrency limit named
`fanout-instance:<id>` (limit 1, created on first use) with a lease, before any
item runs, and keeps renewing the lease while it works. A second run of the
instance finds the slot taken and fails at once with `InstanceBusy`, naming
the run that holds it; nothing of it ran.

A crashed run's lease must not block its own resume: the lease id is kept in
the flow run's label `fanout.instance-lease`, and a run that finds such a label
on itself (the same flow run id, resumed) releases that lease before taking a
new one. A holder that is certainly dead (its run ended, or its process on this host is
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
from typing import Any
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
from prefect.client.schemas.sorting import FlowRunSort
from prefect.context import FlowRunContext
from prefect.exceptions import (
    ObjectAlreadyExists,
    ObjectNotFound,
    PrefectHTTPStatusError,
)
from prefect.runtime import flow_run

from flows.errors import InvalidRequest
from flows.wrap_up import after_final_state

LIMIT_PREFIX = "fanout-instance:"
INSTANCE_TAG_PREFIX = "fanout.instance:"
"""The tag the webhook gives an instance's runs (deployments/runs.py), which the status API finds them by."""
LEASE_LABEL = "fanout.instance-lease"
OWNER_LABEL = "fanout.instance-lease-owner"
"""`<host>:<pid>` of the process holding the lease, so a contender on the same host can see it died."""
LOCKED = 423


class InstanceBusy(InvalidRequest):
    """Another run of the same instance holds its lease; this run did nothing."""


def limit_name(instance_id: str) -> str:
    return f"{LIMIT_PREFIX}{instance_id}"


@contextmanager
def holding_instance(instance_id: str | None, lease_seconds: float) -> Iterator[None]:
    """Hold the instance's lease for the block; `InstanceBusy` when another run holds it.

    No instance id (it defaults to the flow run's own, which nothing else can share): no lease.
    """
    run_id = flow_run.get_id()
    if instance_id is None or run_id is None:
        yield
        return
    with get_client(sync_client=True) as client:
        lease_id = _take(client, instance_id, UUID(run_id), lease_seconds)
        stop = threading.Event()
        renewing = threading.Thread(
            target=_renew, args=(client, lease_id, lease_seconds, stop), name="fanout-instance-lease", daemon=True
        )
        renewing.start()
        try:
            yield
        finally:
            stop.set()
            after_final_state(functools.partial(_give_back, lease_id))


def _take(client: SyncPrefectClient, instance_id: str, run_id: UUID, lease_seconds: float) -> UUID:
    """The lease of the instance's one slot, after releasing one this same run left behind when it crashed."""
    name = limit_name(instance_id)
    with suppress(ObjectAlreadyExists):
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
    me = _this_run(client, run_id)
    own = str((me.labels or {}).get(LEASE_LABEL) or "")
    if own:
        client.release_concurrency_slots_with_lease(UUID(own))  # this run's own, from before its crash
    try:
        response = _increment(client, name, run_id, lease_seconds)
    except InstanceBusy:
        try:
            if not _release_dead_holders(client, instance_id, run_id):
                raise
            response = _increment(client, name, run_id, lease_seconds)
        except InstanceBusy:
            raise InstanceBusy(
                f"instance {instance_id} is already running{_holder(client, instance_id, run_id)}"
            ) from None
    lease_id = UUID(response.json()["lease_id"])
    client.update_flow_run_labels(run_id, {LEASE_LABEL: str(lease_id), OWNER_LABEL: _owner()})
    tag = f"{INSTANCE_TAG_PREFIX}{instance_id}"
    if tag not in me.tags:  # a run not started by the webhook: make it findable by its instance id
        client.update_flow_run(run_id, tags=[*me.tags, tag])
    return lease_id


def _this_run(client: SyncPrefectClient, run_id: UUID) -> FlowRun:
    """This flow run with its labels and tags: the copy Prefect's engine read when the run
    started (one API call less on every run), else read now."""
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


def _release_dead_holders(client: SyncPrefectClient, instance_id: str, run_id: UUID) -> bool:
    """Release the leases of the instance's other runs that cannot be working any more; True if any.

    A holder is dead when its run is in a final state (it ended without releasing), or when
    it ran in a process of this host that no longer exists (killed: `fanout run` after a
    `kill -9` must not wait out the lease). A holder elsewhere is trusted until its lease lapses.
    """
    flow_runs = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"{INSTANCE_TAG_PREFIX}{instance_id}"])),
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=10,
    )
    released = False
    for other in flow_runs:
        lease = str((other.labels or {}).get(LEASE_LABEL) or "")
        if other.id == run_id or not lease:
            continue
        final = other.state is not None and other.state.is_final()
        if final or _dead_here(str((other.labels or {}).get(OWNER_LABEL) or "")):
            client.release_concurrency_slots_with_lease(UUID(lease))  # a lease already gone: a no-op
            released = True
    return released


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
    """Release the lease once the run's final state is recorded (flows/wrap_up.py), which this write
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

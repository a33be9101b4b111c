"""One active run per instance, however and wherever it was started: the run holds its instance's lease
while it works.

The webhook refuses a second start of a busy instance, but a run can also come
from `fanout run` (on its own Prefect server), `prefect deployment run`, the
event trigger or a restart. So the flow itself takes the instance's lease
before any item runs, and renews it while it works. The lease lives where the
checkpoints live, in the instance's folder of result storage
(src/fanout/storage/lease.py): every starter that shares the checkpoints shares
the lease, whatever Prefect server it talks to. A second run of the instance
finds it held and fails at once with `InstanceBusy`, naming the run that holds
it; nothing of it ran.

A crashed run's lease does not block its own resume, nor a new run, once its
process is known gone (on this host) or the lease lapsed after
`FANOUT_INSTANCE_LEASE_SECONDS`. A second attempt of the same flow run while
the first may still work waits for it to end rather than fail or run its items
again.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext
from prefect.runtime import flow_run

from fanout.core.errors import InvalidRequest
from fanout.core.wrap_up import after_final_state
from fanout.storage import lease
from fanout.storage.lease import LeaseRecord, LeaseTaken, LeaseUnsupported

if TYPE_CHECKING:
    from prefect.filesystems import WritableFileSystem

logger = logging.getLogger(__name__)

WAIT_POLL_SECONDS = 1.0
INSTANCE_TAG_PREFIX = "fanout.instance:"
"""The tag the webhook gives an instance's runs (src/fanout/service/runs.py), which the status API finds them by."""


class InstanceBusy(InvalidRequest):
    """Another run of the same instance holds its lease; this run did nothing."""


@contextmanager
def holding_instance(instance_id: str | None, lease_seconds: float, storage: WritableFileSystem) -> Iterator[None]:
    """Hold the instance's lease for the block; `InstanceBusy` when another run holds it.

    No instance id (it defaults to the flow run's own, which nothing else can share): no lease.
    """
    run_id = flow_run.get_id()
    if instance_id is None or run_id is None:
        yield
        return
    held = _take(storage, instance_id, str(run_id), lease_seconds)
    if held is None:
        yield
        return
    tagging = _tagging(UUID(str(run_id)), instance_id)
    stop = threading.Event()
    renewing = threading.Thread(
        target=_renew,
        args=(storage, instance_id, held, lease_seconds, stop),
        name="fanout-instance-lease",
        daemon=True,
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
        tagging.join()
        after_final_state(functools.partial(_give_back, storage, instance_id, held), stopped=stopped)


def _take(
    storage: WritableFileSystem, instance_id: str, run_id: str, lease_seconds: float, poll: float = WAIT_POLL_SECONDS
) -> LeaseRecord | None:
    """The lease, or `InstanceBusy`; None on storage that offers no create-if-absent (logged: no lease).

    Held by an earlier attempt of this same flow run that may still be working (it was put back to
    run while alive, or its host is out of sight): wait until that attempt ends or its lease lapses,
    then go on from the checkpoints it left, rather than run its items a second time at once.
    """
    while True:
        try:
            return lease.take(storage, instance_id, run_id, lease_seconds)
        except LeaseTaken as taken:
            if taken.holder.flow_run_id != run_id:
                raise _busy(instance_id, taken.holder) from None
            logger.warning(
                "instance %s: an earlier attempt of this flow run (%s) still holds the lease; waiting for it to end",
                instance_id,
                taken.holder.owner,
            )
            time.sleep(poll)
        except LeaseUnsupported as unsupported:
            logger.warning("instance %s runs without a lease: %s", instance_id, unsupported)
            return None


def _busy(instance_id: str, holder: LeaseRecord) -> InstanceBusy:
    return InstanceBusy(
        f"instance {instance_id} is already running as flow run {holder.flow_run_id} "
        f"(process {holder.owner}); its lease is renewed while it works"
    )


def _tagging(run_id: UUID, instance_id: str) -> threading.Thread:
    """`_tag` on a thread of its own, in the run's context, begun now: its API call goes on while the
    items run, and the block waits for it at its end."""
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(_tag, run_id, instance_id), name="fanout-instance-tag")
    thread.start()
    return thread


def instance_tag(instance_id: str) -> str:
    """The tag that makes a run findable by its instance id."""
    return f"{INSTANCE_TAG_PREFIX}{instance_id}"


def _tag(run_id: UUID, instance_id: str) -> None:
    """Make a run not started by the webhook findable by its instance id (one API call, only then); a
    failure is logged: the run goes on, found by its flow run id."""
    tag = instance_tag(instance_id)
    context = FlowRunContext.get()
    tags = context.flow_run.tags if context is not None and context.flow_run is not None else None
    if tags is not None and tag in tags:
        return
    try:
        with get_client(sync_client=True) as client:
            current = tags if tags is not None else client.read_flow_run(run_id).tags
            if tag not in current:
                client.update_flow_run(run_id, tags=[*current, tag])
    except Exception as error:  # noqa: BLE001 - findability by instance id is not worth failing the run for
        logger.warning("instance %s: flow run %s not tagged with it: %r", instance_id, run_id, error)


def _renew(
    storage: WritableFileSystem, instance_id: str, held: LeaseRecord, lease_seconds: float, stop: threading.Event
) -> None:
    """Renew the lease every third of its duration until `stop`; a lost lease is logged and left."""
    while not stop.wait(lease_seconds / 3):
        try:
            renewed = lease.renew(storage, instance_id, held, lease_seconds)
        except OSError as error:
            logger.warning("instance %s: lease not renewed this time: %r", instance_id, error)
            continue
        if renewed is None:
            now_held = lease.current(storage, instance_id)
            if now_held is None or now_held.flow_run_id != held.flow_run_id:
                logger.warning("instance %s: its lease was taken over by another run", instance_id)
            return


def _give_back(storage: WritableFileSystem, instance_id: str, held: LeaseRecord) -> None:
    """Release the lease once the run's final state is recorded (src/fanout/core/wrap_up.py); if storage
    cannot be reached it lapses on its own (logged, not raised)."""
    try:
        lease.release(storage, instance_id, held)
    except OSError as error:
        logger.warning("instance %s: lease not released (it lapses on its own): %r", instance_id, error)

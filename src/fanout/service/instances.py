"""The webhook's operations on instances (start, find, status, terminate, restart, purge), one
implementation each, whatever route table calls them.

They raise `fanout.service.webhook_errors` and know nothing of HTTP. One active run per instance: a
start naming an instance creates its run with a Prefect idempotency key derived from the instance's
newest run, which Prefect keeps unique, so of two racing starters exactly one creates the run and the
other answers 409 naming it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from prefect.filesystems import WritableFileSystem

from fanout.core.settings import SourceSettings
from fanout.inputs.request import FanoutRequest
from fanout.service.idempotency import request_digest
from fanout.service.orchestrators import Orchestrator, flow_parameters, resolve
from fanout.service.resuming import ResumePolicy
from fanout.service.runs import Purged, RunRecord, Runs
from fanout.service.start_queue import QueuedStart, StartQueue
from fanout.service.status import (
    FINISHED,
    CustomStatus,
    RuntimeStatus,
    StatusDocument,
    requested_total,
    runtime_status,
    status_document,
)
from fanout.service.submitter import Submitter
from fanout.service.webhook_errors import (
    DeploymentNotFound,
    InstanceConflict,
    InstanceNotFound,
    PrefectUnavailable,
    StartRejected,
    StorageUnavailable,
)
from fanout.storage import lease
from fanout.storage.checkpoint_purge import StorageDeleted, delete_instance
from fanout.storage.lease import LeaseUnsupported

DEPLOYMENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
"""A deployment's name within the flow, as a path segment may carry it."""
QUEUED_STATUS: dict[str, RuntimeStatus] = {
    "queued": RuntimeStatus.PENDING,
    "failed": RuntimeStatus.FAILED,
    "cancelled": RuntimeStatus.TERMINATED,
}

Admitting = TypeVar("Admitting", bound=SourceSettings)
"""Settings a start is admitted under (the webhook's), kept their own type with the sources added."""


@dataclass(frozen=True)
class Started:
    """What a start answers with: the instance and, once its run exists, the run's Prefect page."""

    instance_id: str
    ui_url: str | None


Found = RunRecord | QueuedStart
StorageFactory = Callable[[], WritableFileSystem]
"""The result storage the flow's runs write to (flows/checkpoints.result_storage), built when needed."""


@dataclass(frozen=True)
class PurgeReport:
    """What a purge deleted. `checkpoints`, `outputs` and `files` are None when the result storage is of
    a kind nothing here can delete from (or the webhook was given none)."""

    instances: int = 0
    runs: int = 0
    artifacts: int = 0
    checkpoints: int | None = 0
    outputs: int | None = 0
    files: int | None = 0

    @classmethod
    def of(cls, purged: Purged, stored: StorageDeleted | None) -> PurgeReport:
        went = purged.runs > 0 or (stored is not None and stored.files > 0)
        if stored is None:
            return cls(int(went), purged.runs, purged.artifacts, None, None, None)
        outputs = stored.outputs + purged.results  # fanout's output records, and the runs' own results
        return cls(int(went), purged.runs, purged.artifacts, stored.checkpoints, outputs, stored.files + purged.results)

    def __add__(self, other: PurgeReport) -> PurgeReport:
        return PurgeReport(
            self.instances + other.instances,
            self.runs + other.runs,
            self.artifacts + other.artifacts,
            _plus(self.checkpoints, other.checkpoints),
            _plus(self.outputs, other.outputs),
            _plus(self.files, other.files),
        )

    def document(self) -> dict[str, int | None]:
        """The JSON answer; `instancesDeleted` as Durable Functions and the seed name it."""
        return {
            "instancesDeleted": self.instances,
            "runsDeleted": self.runs,
            "checkpointsDeleted": self.checkpoints,
            "outputsDeleted": self.outputs,
            "filesDeleted": self.files,
            "artifactsDeleted": self.artifacts,
        }


def _plus(one: int | None, other: int | None) -> int | None:
    return None if one is None or other is None else one + other


def instance_key(instance_id: str, newest: RunRecord | None) -> str:
    """Prefect's idempotency key of the instance's next run: one per (instance, run it follows)."""
    return f"fanout-instance:{instance_id}:after:{newest.flow_run_id if newest else 'new'}"


def is_finished(run: RunRecord) -> bool:
    return runtime_status(run.state_type) in FINISHED


class Instances:
    """Start, find, read, terminate, restart and purge instances over Prefect and the start queue."""

    def __init__(
        self,
        runs: Runs,
        queue: StartQueue,
        submitter: Submitter,
        flow_name: str,
        resumes: ResumePolicy,
        storage: StorageFactory | None = None,
    ) -> None:
        self.runs = runs
        self.storage = storage
        self.queue = queue
        self.submitter = submitter
        self.flow_name = flow_name
        self.resumes = resumes
        self._instance_locks: dict[str, asyncio.Lock] = {}

    async def start(self, request: FanoutRequest, key: str | None, deployment: str | None = None) -> Started:
        """Queue a new instance, or create a run of the named one; `key` is the client's Idempotency-Key,
        `deployment` the deployment's name within the flow (`http-enrich`), the default when None."""
        full_name = await self._deployment(deployment)
        digest = request_digest(request)
        if request.instance_id is None:
            return self._queue(request, digest, key, full_name)
        lock = self._instance_locks.setdefault(request.instance_id, asyncio.Lock())
        async with lock:  # one Prefect round trip per instance at a time in this process; atomic across processes
            return await self._create(request, request.instance_id, digest, key, full_name)

    async def admission_settings(self, deployment: str | None, settings: Admitting) -> Admitting:
        """The settings a start of `deployment` is admitted under: the webhook's, plus the generators the
        deployment allows in its own `FANOUT_SOURCES` job variable (its flow runs check the same list);
        `FANOUT_SOURCE_ROOTS` stay the webhook's own, as they guard the files of the webhook's host.
        `DeploymentNotFound` for a name Prefect does not know."""
        if deployment is None:
            return settings
        env = await self._deployment_env(deployment)
        allowed = [name.strip() for name in env.get("FANOUT_SOURCES", "").split(",") if name.strip()]
        extra = [name for name in allowed if name not in settings.sources]
        return settings.model_copy(update={"sources": [*settings.sources, *extra]}) if extra else settings

    async def _deployment(self, name: str | None) -> str | None:
        """`<flow>/<name>` once Prefect knows it (None: the default); `DeploymentNotFound` otherwise."""
        if name is None:
            return None
        await self._deployment_env(name)
        return f"{self.flow_name}/{name}"

    async def _deployment_env(self, name: str) -> dict[str, str]:
        full_name = f"{self.flow_name}/{name}"
        env = await self.runs.deployment_env(full_name) if DEPLOYMENT_NAME.match(name) else None
        if env is None:
            raise DeploymentNotFound(f"no deployment {full_name!r}; nothing was started")
        return env

    def _queue(self, request: FanoutRequest, digest: str, key: str | None, deployment: str | None) -> Started:
        instance_id = uuid.uuid4().hex
        payload = request.model_copy(update={"instance_id": instance_id}).model_dump_json(exclude_defaults=True)
        queue_key = f"key:{key}" if key else f"new:{instance_id}"
        start = self.queue.accept(queue_key, instance_id, payload, digest, deployment)
        _same_body(start.digest, digest, key)
        if start.state == "queued":
            self.submitter.wake()
        return Started(start.instance_id, None)

    async def _create(
        self, request: FanoutRequest, instance_id: str, digest: str, key: str | None, deployment: str | None
    ) -> Started:
        async def create(prefect_key: str, nonce: str) -> RunRecord:
            return await self.runs.start(request, digest, prefect_key, nonce, deployment)

        return await self._create_run(instance_id, digest, key, create)

    async def orchestrator(self, name: str) -> Orchestrator:
        """The deployment a Durable Functions orchestrator name starts (src/fanout/service/orchestrators.py);
        `UnknownOrchestrator` (400) listing the names known."""
        return resolve(name, await self.runs.orchestrators())

    def runs_the_seed(self, orchestrator: Orchestrator) -> bool:
        """True for a deployment of the seed's flow, whose input is a `FanoutRequest`."""
        return orchestrator.flow == self.flow_name

    async def start_flow(
        self, orchestrator: Orchestrator, value: Any, instance_id: str | None, key: str | None
    ) -> Started:
        """Start another flow's deployment with the parameters the input fills, created on Prefect now,
        as an instance: a start without an instance id gets a new one (one derived from `key` when
        given, so a repeat finds the first)."""
        parameters = flow_parameters(orchestrator, value)
        digest = parameters_digest(orchestrator, parameters)
        if instance_id is None:
            instance_id = uuid.uuid5(uuid.NAMESPACE_URL, f"fanout-key:{key}").hex if key else uuid.uuid4().hex

        async def create(prefect_key: str, nonce: str) -> RunRecord:
            assert instance_id is not None
            return await self.runs.start_flow(orchestrator, parameters, instance_id, digest, prefect_key, nonce)

        lock = self._instance_locks.setdefault(instance_id, asyncio.Lock())
        async with lock:
            return await self._create_run(instance_id, digest, key, create)

    async def _create_run(
        self, instance_id: str, digest: str, key: str | None, create: Callable[[str, str], Awaitable[RunRecord]]
    ) -> Started:
        """Create the instance's next run with `create(prefect_key, nonce)`, unless it runs already (409)
        or this is a repeat of the start that made its newest run (that run)."""
        newest = await self.runs.latest(instance_id)
        if newest is not None and key is not None and newest.start_nonce == key:
            _same_body(newest.request_digest, digest, key)
            return Started(instance_id, self.runs.ui_url(newest))  # a repeat of the start that made it
        if newest is not None and not is_finished(newest):
            raise _busy(newest)
        await self._refuse_if_leased(instance_id, newest)
        nonce = key or uuid.uuid4().hex
        prefect_key = instance_key(instance_id, newest)
        try:
            run = await create(prefect_key, nonce)
        except httpx.HTTPStatusError as error:
            raise StartRejected(f"Prefect refused the run: {error.response.text[:500]}") from error
        except PrefectUnavailable:
            found = await self.runs.by_idempotency_key(prefect_key)  # did the create land before it timed out?
            if found is None:
                raise
            run = found
        if run.start_nonce != nonce:
            raise _busy(run)
        return Started(instance_id, self.runs.ui_url(run))

    async def _refuse_if_leased(self, instance_id: str, newest: RunRecord | None) -> None:
        """409 while a run this server does not know as finished holds the instance's lease in result
        storage: a run started elsewhere (`fanout run`, another Prefect server) that shares the checkpoints."""
        if self.storage is None:
            return
        try:
            held = await asyncio.to_thread(lease.holder, self.storage(), instance_id)
        except (LeaseUnsupported, OSError):
            return  # no lease to read here: the run's own lease step still refuses a second run
        if held is None or (newest is not None and held.flow_run_id == str(newest.flow_run_id)):
            return
        raise InstanceConflict(
            f"instance {instance_id} is already running as flow run {held.flow_run_id} ({held.owner}), "
            "started elsewhere with the same result storage"
        )

    async def find(self, instance_id: str) -> Found:
        """The instance's start still in the queue (or refused there), else its newest run, else the
        flow run whose id it is; else 404."""
        start = self.queue.of_instance(instance_id)
        if start is not None and start.state != "submitted":
            return start
        run = await self.runs.latest(instance_id) or await self.runs.by_flow_run_id(instance_id)
        if run is None:
            raise InstanceNotFound(f"no instance {instance_id!r}")
        return run

    async def again(self, found: Found, instance_id: str) -> Found:
        """The instance found again, after `found`: a run by its id (while it is unfinished it stays the
        instance's newest, since a start or restart of a busy instance is refused), else a fresh look-up."""
        if isinstance(found, RunRecord):
            run = await self.runs.again(found)
            if run is not None:
                return run
        return await self.find(instance_id)

    async def status(self, instance_id: str) -> StatusDocument:
        return await self.document(await self.find(instance_id))

    async def document(self, found: Found) -> StatusDocument:
        """The status document of an instance already found (a queued start, or a run)."""
        if isinstance(found, QueuedStart):
            return queued_status(found, self.flow_name)
        return await status_document(self.runs, found, self.flow_name, self.resumes)

    async def terminate(self, instance_id: str) -> Started:
        found = await self.find(instance_id)
        if isinstance(found, QueuedStart):
            if found.state == "queued" and self.queue.finish(
                found.key, "cancelled", error="terminated before it started"
            ):
                return Started(instance_id, None)
            found = await self.find(instance_id)
        if isinstance(found, QueuedStart) or is_finished(found):
            raise InstanceConflict(f"instance {instance_id} already finished ({_status_of(found).value})")
        await self.runs.terminate(found)
        return Started(instance_id, self.runs.ui_url(found))

    async def restart(self, instance_id: str) -> Started:
        run = _finished_run(await self.find(instance_id), instance_id)
        await self.runs.restart(run)
        return Started(instance_id, self.runs.ui_url(run))

    async def purge(self, instance_id: str) -> PurgeReport:
        """Delete a finished instance: result storage first (a purge that fails later is sent again and
        still finds the instance), then its runs and their artifacts. 409 while it may still run."""
        found = await self.find(instance_id)
        if isinstance(found, QueuedStart):
            if found.state == "queued":
                raise InstanceConflict(f"instance {instance_id} is still {RuntimeStatus.PENDING.value}")
            # Terminated while its create was on the way: the run that create makes goes too.
            await self.submitter.sent(found.key)
            purged = await self.runs.purge(instance_id)
            forgotten = self.queue.forget_instance(instance_id)
            return PurgeReport(instances=min(1, forgotten), runs=purged.runs, artifacts=purged.artifacts)
        if not is_finished(found):
            raise InstanceConflict(f"instance {instance_id} is still {runtime_status(found.state_type).value}")
        if found.instance_id != instance_id:  # found by a flow-run id: its instance may have a newer run
            newest = await self.runs.latest(found.instance_id)
            if newest is not None and not is_finished(newest):
                raise _busy(newest)
        stored = await self._delete_stored(found.instance_id)
        purged = await self.runs.purge(found.instance_id) + await self.runs.delete_run(found)
        self.queue.forget_instance(found.instance_id)
        return PurgeReport.of(purged, stored)

    async def _delete_stored(self, instance_id: str) -> StorageDeleted | None:
        """The instance's records in result storage, deleted off the event loop (file I/O)."""
        if self.storage is None:
            return None
        try:
            return await asyncio.to_thread(delete_instance, self.storage(), instance_id)
        except OSError as error:
            raise StorageUnavailable(f"cannot delete the checkpoints of instance {instance_id}: {error}") from error


def parameters_digest(orchestrator: Orchestrator, parameters: dict[str, Any]) -> str:
    """A stable digest of a start of another flow: its deployment and parameters."""
    canonical = json.dumps([orchestrator.full_name, parameters], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def _finished_run(found: Found, instance_id: str) -> RunRecord:
    """Restart acts only on a finished run; otherwise 409 with its current status."""
    if isinstance(found, QueuedStart):
        raise InstanceConflict(f"instance {instance_id} never started ({_status_of(found).value}); start it anew")
    if not is_finished(found):
        raise InstanceConflict(f"instance {instance_id} is still {runtime_status(found.state_type).value}")
    return found


def _status_of(found: Found) -> RuntimeStatus:
    return QUEUED_STATUS[found.state] if isinstance(found, QueuedStart) else runtime_status(found.state_type)


def _busy(run: RunRecord) -> InstanceConflict:
    status = runtime_status(run.state_type).value
    return InstanceConflict(f"instance {run.instance_id} is already {status} as flow run {run.flow_run_id}")


def _same_body(first: str | None, digest: str, key: str | None) -> None:
    if key is not None and first != digest:
        raise InstanceConflict(f"Idempotency-Key {key!r} was already used with a different body")


def queued_status(start: QueuedStart, name: str) -> StatusDocument:
    """The status document of a start Prefect has no run for (yet): Pending, or why it never ran."""
    request: dict[str, Any] = json.loads(start.request)
    accepted = datetime.fromtimestamp(start.accepted, tz=UTC)
    return StatusDocument(
        name=name,
        instance_id=start.instance_id,
        runtime_status=QUEUED_STATUS[start.state],
        input=request,
        output=start.error,
        custom_status=CustomStatus(total=requested_total({"request": request})),
        created_time=accepted,
        last_updated_time=accepted,
    )

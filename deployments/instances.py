"""Managing instances beyond start and status: find by either id, list with filters, suspend, resume, history.

`deployments/runs.py` holds what the seed's `/api/` routes need (start, latest
run, terminate, restart, purge). Durable Functions' management API needs more,
and these operations sit beside `Runs`, on the same `PrefectClient`, so that
either route table can use them:

- `find` takes an instance id or a flow-run id, so runs started by
  `prefect deployment run`, a trigger or `fanout serve` are found too.
- `every` lists the latest run of each instance of the deployment, newest
  first; `InstanceQuery` and `page` filter and page it. Prefect's flow-run
  filter has no creation time, so the list is read (at most `MAX_SCAN` runs)
  and filtered here.
- `suspend` and `resume` are Prefect's suspend (a `Suspended` state with
  `pause_reschedule`: the flow process stops before its next task run, and a
  resume schedules the run again, which continues from its checkpoints) and
  `POST /flow_runs/{id}/resume`.
- `item_rows` reads the run report's item table (flows/report.py).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from uuid import UUID, uuid4

from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
)
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import ArtifactSort, FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import State, Suspended

from deployments.runs import LABEL_INSTANCE, PrefectRuns, RunRecord, Runs, record
from deployments.status import RuntimeStatus, runtime_status
from flows.report import artifact_key

MAX_SCAN = 10_000
"""Most flow runs `every` reads; past that, older instances are not listed."""
PAGE = 200


class BadQuery(ValueError):
    """A list or purge filter that cannot be understood (the message says which part)."""


@dataclass(frozen=True)
class InstanceQuery:
    """Durable Functions' list filters; an unset field matches everything."""

    created_from: datetime | None = None
    created_to: datetime | None = None
    statuses: frozenset[RuntimeStatus] = field(default_factory=frozenset)
    prefix: str | None = None

    def matches(self, run: RunRecord) -> bool:
        created = _utc(run.created)
        if self.created_from is not None and (created is None or created < self.created_from):
            return False
        if self.created_to is not None and (created is None or created > self.created_to):
            return False
        if self.statuses and status_of(run) not in self.statuses:
            return False
        return self.prefix is None or run.instance_id.startswith(self.prefix)


def status_of(run: RunRecord) -> RuntimeStatus:
    """The instance's runtimeStatus, by the status module's rule (one place decides it)."""
    return runtime_status(run.state_type)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def latest_per_instance(runs: Iterable[RunRecord]) -> list[RunRecord]:
    """One run per instance, its newest, newest instances first."""
    latest: dict[str, RunRecord] = {}
    for run in runs:
        held = latest.get(run.instance_id)
        if held is None or (_utc(run.created) or _EPOCH) > (_utc(held.created) or _EPOCH):
            latest[run.instance_id] = run
    return sorted(latest.values(), key=lambda run: _utc(run.created) or _EPOCH, reverse=True)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def page(runs: Sequence[RunRecord], top: int | None, token: str | None) -> tuple[list[RunRecord], str | None]:
    """`top` runs from where `token` left off, and the token of the next page (None on the last)."""
    start = decode_token(token) if token else 0
    if top is None:
        return list(runs[start:]), None
    end = start + top
    return list(runs[start:end]), encode_token(end) if end < len(runs) else None


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_token(token: str) -> int:
    """The offset a continuation token carries, or `BadQuery`."""
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise BadQuery("x-ms-continuation-token is not a token this server gave") from None
    if not isinstance(offset, int) or offset < 0:
        raise BadQuery("x-ms-continuation-token is not a token this server gave")
    return offset


@runtime_checkable
class Instances(Protocol):
    """What Durable Functions' management API needs beyond `Runs`."""

    async def find(self, instance_id: str) -> RunRecord | None: ...
    async def every(self) -> list[RunRecord]: ...
    async def suspend(self, run: RunRecord, reason: str) -> str | None: ...
    async def resume(self, run: RunRecord, reason: str) -> str | None: ...
    async def purge_instance(self, run: RunRecord) -> int: ...
    async def item_rows(self, run: RunRecord) -> list[dict[str, Any]] | None: ...


def instances_for(runs: Runs) -> Instances:
    """The instance operations over the webhook's `Runs` (which may implement them itself, as fakes do)."""
    if isinstance(runs, Instances):
        return runs
    if isinstance(runs, PrefectRuns):
        return PrefectInstances(runs)
    raise TypeError(f"{type(runs).__name__} offers no instance management")


class PrefectInstances:
    """`Instances` on the Prefect server behind a `PrefectRuns`, through its client."""

    def __init__(self, runs: PrefectRuns) -> None:
        self.runs = runs
        self.client = runs.client

    async def find(self, instance_id: str) -> RunRecord | None:
        """The instance's latest run, or the flow run with that id when it is one of the deployment's."""
        run = await self.runs.latest(instance_id)
        if run is not None:
            return run
        try:
            flow_run = await self.client.read_flow_run(UUID(instance_id))
        except (ValueError, ObjectNotFound):
            return None
        if flow_run.deployment_id != await self.runs.deployment_id():
            return None
        return record(flow_run)

    async def every(self) -> list[RunRecord]:
        deployment = FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[await self.runs.deployment_id()]))
        found: list[RunRecord] = []
        while len(found) < MAX_SCAN:
            batch = await self.client.read_flow_runs(
                flow_run_filter=deployment, sort=FlowRunSort.EXPECTED_START_TIME_DESC, limit=PAGE, offset=len(found)
            )
            found += [record(flow_run) for flow_run in batch]
            if len(batch) < PAGE:
                break
        return latest_per_instance(found)

    async def suspend(self, run: RunRecord, reason: str) -> str | None:
        """Suspend the run; None when done, else why Prefect refused. A run no worker has claimed
        is suspended by force (Prefect only suspends Running runs), so no worker starts it."""
        state: State[Any] = Suspended(pause_key=f"fanout-{uuid4()}", message=reason or "suspended")
        force = run.state_type == "SCHEDULED"
        result = await self.client.set_flow_run_state(run.flow_run_id, state, force=force)
        return None if result.status == SetStateStatus.ACCEPT else _reason(result.details)

    async def resume(self, run: RunRecord, reason: str) -> str | None:
        """Resume a suspended run: Prefect schedules it again and it continues from its checkpoints."""
        result = await self.client.resume_flow_run(run.flow_run_id)
        return None if result.status == SetStateStatus.ACCEPT else _reason(result.details)

    async def purge_instance(self, run: RunRecord) -> int:
        """Purge the instance's runs; a run started outside fanout's starters (no instance tag) is deleted by id."""
        deleted = await self.runs.purge(run.instance_id)
        if deleted == 0 and LABEL_INSTANCE not in run.labels:
            try:
                await self.client.delete_flow_run(run.flow_run_id)
            except ObjectNotFound:
                return 0
            return 1
        return deleted

    async def item_rows(self, run: RunRecord) -> list[dict[str, Any]] | None:
        """The rows of the run's item table (one per item, or only failures past the report's limit),
        or None when the run published none."""
        artifacts = await self.client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[run.flow_run_id]),
                key=ArtifactFilterKey(any_=[artifact_key(run.instance_id, "items")]),
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
        if not artifacts:
            return None
        data = artifacts[0].data
        rows = json.loads(data) if isinstance(data, str) else data
        return [dict(row) for row in rows] if isinstance(rows, list) else None


def _reason(details: Any) -> str:
    return str(getattr(details, "reason", None) or "Prefect refused the state change")

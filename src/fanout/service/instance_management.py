"""Managing instances beyond the seed's operations: list with filters, suspend, resume, history.

Durable Functions' management API needs more than the operations every route table shares
(src/fanout/service/instances.py); these sit beside them, on the same `Runs`. Listing reads the
flow's recent runs (at most `MAX_SCAN`) and filters them here, because Prefect's flow-run filter has
no creation time; suspend and resume are Prefect's own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable
from uuid import uuid4

from prefect.client.schemas.filters import ArtifactFilterKey, FlowFilter, FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort
from prefect.states import State, Suspended

from fanout.engine.report import artifact_key, latest_table_rows
from fanout.service.instances import QUEUED_STATUS, Found
from fanout.service.resuming import ResumePolicy, resume_of
from fanout.service.runs import OTHER_FLOW_TAG, PrefectRuns, RunRecord, Runs, record, unavailable_as_503
from fanout.service.start_queue import QueuedStart
from fanout.service.status import RuntimeStatus, runtime_status

REPORT_GRACE_SECONDS = 2.0
"""How long after a run's final state its item report may still be on its way: the run publishes it
right after that state, so a history read in between waits for it rather than answer no items."""
REPORTING = frozenset({RuntimeStatus.COMPLETED, RuntimeStatus.FAILED})
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

    def matches(self, run: RunRecord, policy: ResumePolicy) -> bool:
        created = _utc(run.created)
        if self.created_from is not None and (created is None or created < self.created_from):
            return False
        if self.created_to is not None and (created is None or created > self.created_to):
            return False
        if self.statuses and status_of(run, policy) not in self.statuses:
            return False
        return self.prefix is None or run.instance_id.startswith(self.prefix)


def status_of(found: Found, policy: ResumePolicy) -> RuntimeStatus:
    """The instance's runtimeStatus by status_document's rule: a crashed run that will be resumed is Running."""
    if isinstance(found, QueuedStart):
        return QUEUED_STATUS[found.state]
    return RuntimeStatus.RUNNING if resume_of(found, policy).after_crash else runtime_status(found.state_type)


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def latest_per_instance(runs: Iterable[RunRecord]) -> list[RunRecord]:
    """One run per instance, its newest, newest instances first (by `place`)."""
    latest: dict[str, RunRecord] = {}
    for run in runs:
        held = latest.get(run.instance_id)
        if held is None or (_utc(run.created) or _EPOCH) > (_utc(held.created) or _EPOCH):
            latest[run.instance_id] = run
    return sorted(latest.values(), key=place, reverse=True)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Place = tuple[datetime, str]


def place(run: RunRecord) -> Place:
    """Where a run stands in the list, newest first: its creation time, then its instance id."""
    return _utc(run.created) or _EPOCH, run.instance_id


def page(runs: Sequence[RunRecord], top: int | None, token: str | None) -> tuple[list[RunRecord], str | None]:
    """`top` runs from after the place `token` names, and the next page's token (None on the last).

    The token names the last listed run's place, not a count, so instances started or purged between two
    pages neither repeat nor go missing."""
    after = decode_token(token) if token else None
    rest = [run for run in runs if place(run) < after] if after else list(runs)
    if top is None or len(rest) <= top:
        return rest, None
    chosen = rest[:top]
    return chosen, encode_token(place(chosen[-1]))


def encode_token(after: Place) -> str:
    created, instance_id = after
    return base64.urlsafe_b64encode(json.dumps({"after": [created.isoformat(), instance_id]}).encode()).decode()


def decode_token(token: str) -> Place:
    """The place a continuation token names, or `BadQuery`."""
    refused = BadQuery("x-ms-continuation-token is not a token this server gave")
    try:
        created, instance_id = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
        at = datetime.fromisoformat(created)
    except (binascii.Error, ValueError, KeyError, TypeError, RecursionError):
        raise refused from None
    if not isinstance(instance_id, str) or at.tzinfo is None:
        raise refused
    return at.astimezone(UTC), instance_id


@runtime_checkable
class Management(Protocol):
    """What Durable Functions' management API needs beyond `Runs` and `Instances`."""

    async def every(self) -> list[RunRecord]: ...
    @unavailable_as_503
    async def suspend(self, run: RunRecord, reason: str) -> str | None: ...
    @unavailable_as_503
    async def resume(self, run: RunRecord, reason: str) -> str | None: ...
    async def item_rows(self, run: RunRecord) -> list[dict[str, Any]] | None: ...


async def finished_item_rows(
    management: Management,
    run: RunRecord,
    status: RuntimeStatus,
    now: datetime | None = None,
    grace: float = REPORT_GRACE_SECONDS,
    interval: float = 0.1,
) -> list[dict[str, Any]] | None:
    """The run's item rows; for a run that reached Completed or Failed less than `grace` seconds ago and
    has no report yet, the report once it lands (at most `grace` after that state), so that a client
    reading history on its first final answer sees the items."""
    rows = await management.item_rows(run)
    if rows is not None or status not in REPORTING or run.updated is None:
        return rows
    since = ((now or datetime.now(UTC)) - run.updated).total_seconds()
    deadline = time.monotonic() + min(grace, grace - since)
    while rows is None and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        rows = await management.item_rows(run)
    return rows


def management_for(runs: Runs) -> Management:
    """The management operations over the webhook's `Runs` (which may implement them itself, as fakes do)."""
    if isinstance(runs, Management):
        return runs
    if isinstance(runs, PrefectRuns):
        return PrefectManagement(runs)
    raise TypeError(f"{type(runs).__name__} offers no instance management")


class PrefectManagement:
    """`Management` on the Prefect server behind a `PrefectRuns`, through its client; the API's
    failures become `PrefectUnavailable` (503), as in runs.py."""

    def __init__(self, runs: PrefectRuns) -> None:
        self.runs = runs
        self.client = runs.client

    @unavailable_as_503
    async def every(self) -> list[RunRecord]:
        """The seed flow's deployment runs, and the runs of other flows started as instances (tagged
        `fanout.flow`): each instance's newest."""
        flow, deployed = self.runs.of_the_flow()
        seed = await self._scan(flow, FlowRunFilter(deployment_id=deployed))
        others = FlowRunFilter(deployment_id=deployed, tags=FlowRunFilterTags(all_=[OTHER_FLOW_TAG]))
        return latest_per_instance([*seed, *(await self._scan(None, others))])

    async def _scan(self, flow: FlowFilter | None, flow_runs: FlowRunFilter) -> list[RunRecord]:
        """Up to `MAX_SCAN` matching runs, newest first, a page at a time."""
        found: list[RunRecord] = []
        while len(found) < MAX_SCAN:
            batch = await self.client.read_flow_runs(
                flow_filter=flow,
                flow_run_filter=flow_runs,
                sort=FlowRunSort.EXPECTED_START_TIME_DESC,
                limit=PAGE,
                offset=len(found),
            )
            found += [record(flow_run) for flow_run in batch]
            if len(batch) < PAGE:
                break
        return found

    @unavailable_as_503
    async def suspend(self, run: RunRecord, reason: str) -> str | None:
        """Suspend the run; None when done, else why Prefect refused. A run no worker has claimed
        is suspended by force (Prefect only suspends Running runs), so no worker starts it."""
        state: State[Any] = Suspended(pause_key=f"fanout-{uuid4()}", message=reason or "suspended")
        force = run.state_type == "SCHEDULED"
        result = await self.client.set_flow_run_state(run.flow_run_id, state, force=force)
        return None if result.status == SetStateStatus.ACCEPT else _reason(result.details)

    @unavailable_as_503
    async def resume(self, run: RunRecord, reason: str) -> str | None:
        """Resume a suspended run: Prefect schedules it again and it continues from its checkpoints."""
        result = await self.client.resume_flow_run(run.flow_run_id)
        return None if result.status == SetStateStatus.ACCEPT else _reason(result.details)

    @unavailable_as_503
    async def item_rows(self, run: RunRecord) -> list[dict[str, Any]] | None:
        """The rows of the run's item table (one per item, or only failures past the report's limit),
        or None when the run published none."""
        key = ArtifactFilterKey(any_=[artifact_key(run.instance_id, "items")])
        return await latest_table_rows(self.client, run.flow_run_id, key)


def _reason(details: Any) -> str:
    return str(getattr(details, "reason", None) or "Prefect refused the state change")

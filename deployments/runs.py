"""The webhook's view of Prefect: start, find, read, terminate, restart and purge an instance's runs.

Every call goes to the Prefect REST API (through `PrefectClient`, with timeouts);
nothing here runs flow code. An instance's runs carry the tag
`fanout.instance:<id>` and the labels `fanout.instance` and `fanout.request`
(a digest of the starting body, so a reused Idempotency-Key can be checked
against the body it first came with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterIdempotencyKey,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.states import AwaitingRetry, State, StateType

from flows.request import FanoutRequest

INSTANCE_TAG_PREFIX = "fanout.instance:"
LABEL_INSTANCE = "fanout.instance"
LABEL_REQUEST = "fanout.request"
IDEMPOTENCY_PREFIX = "fanout-webhook:"


@dataclass(frozen=True)
class RunRecord:
    """One flow run of an instance, as the webhook needs it."""

    flow_run_id: UUID
    instance_id: str
    name: str
    state_type: str | None
    state_message: str | None
    parameters: dict[str, Any]
    labels: dict[str, Any]
    created: datetime | None
    updated: datetime | None
    state: Any = field(default=None, compare=False, repr=False)
    run_count: int = 0  # attempts that reached Running: the status counts automatic resumes from it

    @property
    def request_digest(self) -> str | None:
        """Digest of the body that started this run (None when not started by the webhook)."""
        value = self.labels.get(LABEL_REQUEST)
        return str(value) if value is not None else None


class Runs(Protocol):
    """What the webhook asks of Prefect."""

    async def start(self, request: FanoutRequest, digest: str, idempotency_key: str | None) -> RunRecord: ...
    async def latest(self, instance_id: str) -> RunRecord | None: ...
    async def by_idempotency_key(self, idempotency_key: str) -> RunRecord | None: ...
    async def output(self, run: RunRecord) -> Any: ...
    async def failures(self, run: RunRecord) -> list[dict[str, Any]] | None: ...
    async def terminate(self, run: RunRecord) -> None: ...
    async def restart(self, run: RunRecord) -> None: ...
    async def purge(self, instance_id: str) -> int: ...
    def ui_url(self, run: RunRecord) -> str | None: ...


def instance_tag(instance_id: str) -> str:
    return f"{INSTANCE_TAG_PREFIX}{instance_id}"


def record(flow_run: FlowRun) -> RunRecord:
    """The webhook's record of a Prefect flow run."""
    request = flow_run.parameters.get("request") or {}
    labels = dict(flow_run.labels or {})
    instance_id = str(labels.get(LABEL_INSTANCE) or request.get("instance_id") or flow_run.id)
    state = flow_run.state
    return RunRecord(
        flow_run_id=flow_run.id,
        instance_id=instance_id,
        name=flow_run.name,
        state_type=state.type.value if state else None,
        state_message=state.message if state else None,
        parameters=dict(flow_run.parameters),
        labels=labels,
        created=flow_run.created,
        updated=flow_run.updated,
        state=state,
        run_count=flow_run.run_count,
    )


class PrefectRuns:
    """`Runs` on a Prefect server, through one long-lived `PrefectClient`."""

    def __init__(self, client: PrefectClient, deployment_name: str, ui_base: str | None) -> None:
        self.client = client
        self.deployment_name = deployment_name
        self.ui_base = ui_base.rstrip("/") if ui_base else None
        self._deployment_id: UUID | None = None

    async def deployment_id(self) -> UUID:
        """The deployment's id, looked up once."""
        if self._deployment_id is None:
            deployment = await self.client.read_deployment_by_name(self.deployment_name)
            self._deployment_id = deployment.id
        return self._deployment_id

    async def start(self, request: FanoutRequest, digest: str, idempotency_key: str | None) -> RunRecord:
        assert request.instance_id is not None
        flow_run = await self.client.create_flow_run_from_deployment(
            await self.deployment_id(),
            parameters={"request": request.model_dump(mode="json", exclude_defaults=True)},
            name=f"fanout-{request.instance_id}",
            tags=["fanout", instance_tag(request.instance_id)],
            labels={LABEL_INSTANCE: request.instance_id, LABEL_REQUEST: digest},
            idempotency_key=f"{IDEMPOTENCY_PREFIX}{idempotency_key}" if idempotency_key else None,
        )
        return record(flow_run)

    async def latest(self, instance_id: str) -> RunRecord | None:
        runs = await self._runs(FlowRunFilter(tags=FlowRunFilterTags(all_=[instance_tag(instance_id)])))
        return runs[0] if runs else None

    async def by_idempotency_key(self, idempotency_key: str) -> RunRecord | None:
        key = f"{IDEMPOTENCY_PREFIX}{idempotency_key}"
        runs = await self._runs(FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[key])))
        return runs[0] if runs else None

    async def _runs(self, flow_run_filter: FlowRunFilter) -> list[RunRecord]:
        """Matching runs, newest first."""
        flow_runs = await self.client.read_flow_runs(flow_run_filter=flow_run_filter, limit=200)
        records = [record(flow_run) for flow_run in flow_runs]
        return sorted(records, key=lambda run: run.created or datetime.min, reverse=True)

    async def output(self, run: RunRecord) -> Any:
        """The Completed run's return value, read from its persisted result."""
        state: State[Any] = run.state
        return await state.aresult(raise_on_failure=False)

    async def failures(self, run: RunRecord) -> list[dict[str, Any]] | None:
        """The failed items (item, attempts, last error) from the run's item report (flows/failures.py),
        or None when the run published no report."""
        from flows.failures import read_failed_items

        return await read_failed_items(self.client, run.flow_run_id)

    async def terminate(self, run: RunRecord) -> None:
        """Cancel the run: a run no worker has picked up ends Cancelled at once; a started one goes
        Cancelling, and its worker stops the flow process and marks it Cancelled."""
        started = run.state_type not in (None, StateType.SCHEDULED.value)
        state_type = StateType.CANCELLING if started else StateType.CANCELLED
        await self.client.set_flow_run_state(
            run.flow_run_id, State(type=state_type, message="terminated through the webhook"), force=True
        )

    async def restart(self, run: RunRecord) -> None:
        """Put the same flow run back to Scheduled, as Prefect's Retry does: same instance, same checkpoints."""
        state: State[Any] = AwaitingRetry(message="restarted through the webhook")
        await self.client.set_flow_run_state(run.flow_run_id, state, force=True)

    async def purge(self, instance_id: str) -> int:
        """Delete every flow run of the instance; how many there were."""
        runs = await self._runs(FlowRunFilter(tags=FlowRunFilterTags(all_=[instance_tag(instance_id)])))
        for run in runs:
            try:
                await self.client.delete_flow_run(run.flow_run_id)
            except ObjectNotFound:
                pass
        return len(runs)

    def ui_url(self, run: RunRecord) -> str | None:
        return f"{self.ui_base}/runs/flow-run/{run.flow_run_id}" if self.ui_base else None

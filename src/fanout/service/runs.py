"""The webhook's view of Prefect: start, find, read, terminate, restart and purge an instance's runs.

Every call goes to the Prefect REST API through one `PrefectClient`, bounded by its own httpx timeouts
and never cancelled from outside (that leaks connection-pool slots); a failed call becomes
`PrefectUnavailable` where it arises. An instance's runs carry the tag `fanout.instance:<id>` and labels
naming the instance, the starting request's digest, the start's nonce and the deployment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ParamSpec, Protocol, TypeVar
from uuid import UUID

import httpx

# Prefect 3.4 resolves its state models' forward references (StateCreate's result types) in
# `prefect.main`, which `import prefect` loads only lazily; a process that sets states without ever
# running a flow (the webhook: terminate, restart) then fails with "StateCreate is not fully defined".
import prefect.main  # noqa: F401
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterDeploymentId,
    FlowRunFilterIdempotencyKey,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import SetStateStatus
from prefect.client.schemas.sorting import FlowRunSort
from prefect.exceptions import ObjectNotFound
from prefect.states import AwaitingRetry, State, StateType

from fanout.core.prefect_adapter import persisted_result_file
from fanout.core.settings import ItemSettings, read
from fanout.inputs.request import FanoutRequest
from fanout.service.orchestrators import Orchestrator
from fanout.service.webhook_errors import PrefectUnavailable
from fanout.storage.run_output import RunOutput

P = ParamSpec("P")
R = TypeVar("R")

INSTANCE_TAG_PREFIX = "fanout.instance:"
LABEL_INSTANCE = "fanout.instance"
LABEL_REQUEST = "fanout.request"
LABEL_START = "fanout.start"
LABEL_DEPLOYMENT = "fanout.deployment"
LABEL_FLOW = "fanout.flow"
"""Set on the runs of a flow other than the seed's, started through an orchestrator name: the flow's name."""
OTHER_FLOW_TAG = "fanout.flow"
"""Tags those runs too, so a list finds them without reading the seed's runs twice."""
TERMINATED = "terminated through the webhook"
"""The message of the states a terminate sets."""
PURGE_PAGE = 200


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

    @property
    def flow(self) -> str | None:
        """The flow's name for a run of a flow other than the seed's (its input is its parameters, its output
        its return value); None for the seed's runs."""
        value = self.labels.get(LABEL_FLOW)
        return str(value) if value is not None else None

    @property
    def input(self) -> dict[str, Any]:
        """What started the run: the seed's `request`, or another flow's parameters."""
        if self.flow is not None:
            return dict(self.parameters)
        return dict(self.parameters.get("request") or {})

    @property
    def start_nonce(self) -> str | None:
        """The nonce of the start that created this run (None when not started by the webhook)."""
        value = self.labels.get(LABEL_START)
        return str(value) if value is not None else None


@dataclass(frozen=True)
class Purged:
    """What deleting an instance's runs took with it on the Prefect server."""

    runs: int = 0
    artifacts: int = 0
    results: int = 0
    """The runs' own persisted results (their return values) deleted from local result storage."""

    def __add__(self, other: Purged) -> Purged:
        return Purged(self.runs + other.runs, self.artifacts + other.artifacts, self.results + other.results)


class Runs(Protocol):
    """What the webhook asks of Prefect."""

    async def start(
        self, request: FanoutRequest, digest: str, idempotency_key: str, nonce: str, deployment: str | None = None
    ) -> RunRecord: ...
    async def deployment_env(self, name: str) -> dict[str, str] | None: ...
    async def orchestrators(self) -> list[Orchestrator]: ...
    async def start_flow(
        self,
        orchestrator: Orchestrator,
        parameters: dict[str, Any],
        instance_id: str,
        digest: str,
        idempotency_key: str,
        nonce: str,
    ) -> RunRecord: ...
    async def flow_result(self, run: RunRecord) -> Any: ...
    async def latest(self, instance_id: str) -> RunRecord | None: ...
    async def by_idempotency_key(self, idempotency_key: str) -> RunRecord | None: ...
    async def by_flow_run_id(self, flow_run_id: str) -> RunRecord | None: ...
    async def again(self, run: RunRecord) -> RunRecord | None: ...
    async def reachable(self) -> str | None: ...
    async def output(self, run: RunRecord) -> RunOutput: ...
    async def failures(self, run: RunRecord) -> list[dict[str, Any]] | None: ...
    async def recorded_items(self, run: RunRecord) -> tuple[int, int] | None: ...
    async def terminate(self, run: RunRecord) -> None: ...
    async def restart(self, run: RunRecord) -> None: ...
    async def purge(self, instance_id: str) -> Purged: ...
    async def delete_run(self, run: RunRecord) -> Purged: ...
    def ui_url(self, run: RunRecord) -> str | None: ...


def unavailable_as_503(call: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn the Prefect API's failures (5xx, 429, no connection, a timeout) into `PrefectUnavailable`.

    Other 4xx answers are the caller's business (say, `ObjectNotFound`) and pass through.
    """

    @functools.wraps(call)
    async def mapped(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await call(*args, **kwargs)
        except httpx.HTTPStatusError as error:
            status = error.response.status_code
            if status < 500 and status != 429:
                raise
            raise PrefectUnavailable(f"Prefect API answered {status}") from error
        except httpx.TimeoutException as error:
            raise PrefectUnavailable(f"no answer from the Prefect API in time ({type(error).__name__})") from error
        except httpx.HTTPError as error:
            raise PrefectUnavailable(f"cannot reach the Prefect API: {error!r}") from error

    return mapped


def _delete_result_file(state: Any) -> int:
    """Delete the run's persisted result when it is a file of local result storage; 1 if one went."""
    path = persisted_result_file(state)
    if path is None:
        return 0
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        return 1
    return 0


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

    def __init__(
        self,
        client: PrefectClient,
        deployment_name: str,
        ui_base: str | None,
        settings: ItemSettings | None = None,
    ) -> None:
        self.client = client
        self.deployment_name = deployment_name
        self.ui_base = ui_base.rstrip("/") if ui_base else None
        self.settings = settings
        """Where outputs are read (`FANOUT_RESULT_STORAGE`); None: the environment's settings, when asked."""
        self.flow_name = deployment_name.split("/")[0]
        self._deployment_ids: dict[str, UUID] = {}
        self._flow_id: UUID | None = None

    async def deployment_id(self, name: str | None = None) -> UUID:
        """The id of deployment `name` (`<flow>/<deployment>`; the webhook's default when None), looked up once."""
        name = name or self.deployment_name
        if name not in self._deployment_ids:
            deployment = await self.client.read_deployment_by_name(name)
            self._deployment_ids[name] = deployment.id
        return self._deployment_ids[name]

    async def flow_id(self) -> UUID:
        """The id of the deployment's flow, looked up once."""
        if self._flow_id is None:
            self._flow_id = (await self.client.read_flow_by_name(self.flow_name)).id
        return self._flow_id

    def of_the_flow(self) -> tuple[FlowFilter, FlowRunFilterDeploymentId]:
        """Runs of the deployment's flow from any of its deployments: the webhook's, `fanout serve`'s, a
        pipeline's. Runs with no deployment (`fanout run`, in its own process) are left out: no worker
        could terminate or restart them."""
        return FlowFilter(name=FlowFilterName(any_=[self.flow_name])), FlowRunFilterDeploymentId(is_null_=False)

    @unavailable_as_503
    async def deployment_env(self, name: str) -> dict[str, str] | None:
        """The `env` job variable of deployment `name` (`<flow>/<deployment>`), or None when Prefect has no
        such deployment."""
        try:
            deployment = await self.client.read_deployment_by_name(name)
        except ObjectNotFound:
            return None
        self._deployment_ids[name] = deployment.id
        env = (deployment.job_variables or {}).get("env") or {}
        return {str(key): str(value) for key, value in env.items()} if isinstance(env, dict) else {}

    @unavailable_as_503
    async def start(
        self, request: FanoutRequest, digest: str, idempotency_key: str, nonce: str, deployment: str | None = None
    ) -> RunRecord:
        """Create a run of `deployment` (the default when None); Prefect's `idempotency_key` (unique per
        flow) makes a repeat return the first run."""
        assert request.instance_id is not None
        name = deployment or self.deployment_name
        flow_run = await self.client.create_flow_run_from_deployment(
            await self.deployment_id(name),
            parameters={"request": request.model_dump(mode="json", exclude_defaults=True)},
            name=f"fanout-{request.instance_id}",
            tags=["fanout", instance_tag(request.instance_id)],
            labels={
                LABEL_INSTANCE: request.instance_id,
                LABEL_REQUEST: digest,
                LABEL_START: nonce,
                LABEL_DEPLOYMENT: name,
            },
            idempotency_key=idempotency_key,
        )
        return record(flow_run)

    @unavailable_as_503
    async def orchestrators(self) -> list[Orchestrator]:
        """Every deployment on the server, as an orchestrator a Durable Functions start may name."""
        deployments = await self.client.read_deployments()
        flows = {flow.id: flow.name for flow in await self.client.read_flows()}
        return [
            Orchestrator.from_schema(
                flows.get(deployment.flow_id, str(deployment.flow_id)),
                deployment.name,
                deployment.parameter_openapi_schema,
                deployment.id,
            )
            for deployment in deployments
        ]

    @unavailable_as_503
    async def start_flow(
        self,
        orchestrator: Orchestrator,
        parameters: dict[str, Any],
        instance_id: str,
        digest: str,
        idempotency_key: str,
        nonce: str,
    ) -> RunRecord:
        """Create a run of another flow's deployment with these parameters, as an instance of fanout's
        (its tag and labels, so every instance route finds it); the idempotency key as in `start`."""
        deployment_id = orchestrator.deployment_id or await self.deployment_id(orchestrator.full_name)
        flow_run = await self.client.create_flow_run_from_deployment(
            deployment_id,
            parameters=parameters,
            name=f"fanout-{instance_id}",
            tags=["fanout", OTHER_FLOW_TAG, instance_tag(instance_id)],
            labels={
                LABEL_INSTANCE: instance_id,
                LABEL_REQUEST: digest,
                LABEL_START: nonce,
                LABEL_DEPLOYMENT: orchestrator.full_name,
                LABEL_FLOW: orchestrator.flow,
            },
            idempotency_key=idempotency_key,
        )
        return record(flow_run)

    async def flow_result(self, run: RunRecord) -> Any:
        """A Completed run's return value, as Prefect persisted it (a project's workers under `fanout up`
        persist results by default); None when it was not persisted. Read through Prefect's own result
        store, from the result storage the webhook shares with the workers: its serializer is the flow's
        (pickle by default), so that storage must be one only the stack's own processes write, as
        `fanout up`'s private home is."""
        state = run.state
        if state is None or getattr(state, "data", None) is None:
            return None
        return await state.aresult(raise_on_failure=False)

    @unavailable_as_503
    async def latest(self, instance_id: str) -> RunRecord | None:
        """The instance's newest run: Prefect filters, sorts and returns one."""
        flow_runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[instance_tag(instance_id)])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
        return record(flow_runs[0]) if flow_runs else None

    @unavailable_as_503
    async def by_idempotency_key(self, idempotency_key: str) -> RunRecord | None:
        flow_runs = await self.client.read_flow_runs(
            flow_run_filter=FlowRunFilter(idempotency_key=FlowRunFilterIdempotencyKey(any_=[idempotency_key])),
            limit=1,
        )
        return record(flow_runs[0]) if flow_runs else None

    @unavailable_as_503
    async def by_flow_run_id(self, flow_run_id: str) -> RunRecord | None:
        """The flow run with that id when it is a deployment run of the flow, however it was started
        (`prefect deployment run`, the event trigger, `fanout serve`): such runs may carry no instance tag."""
        try:
            flow_run = await self.client.read_flow_run(UUID(flow_run_id))
        except (ValueError, ObjectNotFound):
            return None
        if flow_run.deployment_id is None:
            return None
        try:
            seed_flow = await self.flow_id()
        except ObjectNotFound:  # the seed's flow is not deployed on this server
            return None
        return record(flow_run) if flow_run.flow_id == seed_flow else None

    @unavailable_as_503
    async def again(self, run: RunRecord) -> RunRecord | None:
        """The same flow run read again by its id (a key lookup, cheaper than the instance's tag filter);
        None once it is gone."""
        try:
            return record(await self.client.read_flow_run(run.flow_run_id))
        except ObjectNotFound:
            return None

    async def reachable(self) -> str | None:
        """None when the Prefect API answers its health check, else why not."""
        error = await self.client.api_healthcheck()
        if error is None:
            return None
        if isinstance(error, httpx.TimeoutException):
            return f"Prefect API did not answer in time ({type(error).__name__})"
        return (
            f"Prefect API unreachable: {error}"
            if isinstance(error, PrefectUnavailable)
            else f"Prefect API unreachable: {error!r}"
        )

    async def output(self, run: RunRecord) -> RunOutput:
        """The Completed run's ordered output and failed items, from fanout's own output record in result
        storage (src/fanout/storage/run_output.py: checksummed JSON), never from Prefect's persisted result, which
        would be deserialized with Prefect's serializers. `NoRunOutput` when the instance has none."""
        from fanout.storage.checkpoints import result_storage
        from fanout.storage.run_output import load_run_output

        storage = result_storage(self.settings or read(ItemSettings))
        return await asyncio.to_thread(load_run_output, storage, run.instance_id)

    @unavailable_as_503
    async def failures(self, run: RunRecord) -> list[dict[str, Any]] | None:
        """The failed items (item, attempts, last error) from the run's item report (src/fanout/engine/failures.py),
        or None when the run published no report."""
        from fanout.engine.failures import read_failed_items

        return await read_failed_items(self.client, run.flow_run_id)

    async def recorded_items(self, run: RunRecord) -> tuple[int, int] | None:
        """`(total, failed)` of the last `durable_map` stage of a run of another flow, from what the stage wrote
        to result storage before it returned (its plan, its failed items): under the run's id (the stage's
        instance when the flow names none), else under the run's instance. None when neither has a plan."""
        from fanout.storage.checkpoints import result_storage
        from fanout.storage.instance_results import recorded_counts

        storage = result_storage(self.settings or read(ItemSettings))
        instances = list(dict.fromkeys([str(run.flow_run_id), run.instance_id]))
        return await asyncio.to_thread(recorded_counts, storage, instances)

    @unavailable_as_503
    async def terminate(self, run: RunRecord) -> None:
        """Ask Prefect to cancel the run, as its own `flow-run cancel` does, without forcing: the server
        decides on the run's state at that moment, not on `run`'s older copy. A run no worker has taken
        ends Cancelled at once; a taken or started one goes Cancelling, which no process can leave for
        Running, and its worker stops the process and marks it Cancelled; a final one stays as it is."""
        flow_run_id = run.flow_run_id
        result = await self.client.set_flow_run_state(flow_run_id, State(type=StateType.CANCELLING, message=TERMINATED))
        proposed = result.state
        if result.status != SetStateStatus.ACCEPT or proposed is None or not proposed.is_cancelling():
            return
        if await self._left_scheduled(flow_run_id, proposed.id):
            await self.client.set_flow_run_state(flow_run_id, State(type=StateType.CANCELLED, message=TERMINATED))

    async def _left_scheduled(self, flow_run_id: UUID, state_id: UUID) -> bool:
        """True when the state before `state_id` was Scheduled: a run that waits for a worker again after
        an earlier attempt (whose process id Prefect keeps, so it does not cancel it at once itself). No
        worker took it, and none can once it is Cancelling, so nothing is left to stop."""
        history = await self.client.read_flow_run_states(flow_run_id)
        ids = [state.id for state in history]
        at = ids.index(state_id) if state_id in ids else len(ids)
        return at > 0 and history[at - 1].type == StateType.SCHEDULED

    @unavailable_as_503
    async def restart(self, run: RunRecord) -> None:
        """Put the same flow run back to Scheduled, as Prefect's Retry does: same instance, same checkpoints."""
        state: State[Any] = AwaitingRetry(message="restarted through the webhook")
        await self.client.set_flow_run_state(run.flow_run_id, state, force=True)

    @unavailable_as_503
    async def purge(self, instance_id: str) -> Purged:
        """Delete every flow run of the instance and its artifacts, a page at a time; how many went."""
        only_instance = FlowRunFilter(tags=FlowRunFilterTags(all_=[instance_tag(instance_id)]))
        purged = Purged()
        while flow_runs := await self.client.read_flow_runs(flow_run_filter=only_instance, limit=PURGE_PAGE):
            for flow_run in flow_runs:
                purged += await self._delete(flow_run.id, flow_run.state)
        return purged

    @unavailable_as_503
    async def delete_run(self, run: RunRecord) -> Purged:
        """Delete one flow run and its artifacts (a run found by its id, which no instance tag finds)."""
        return await self._delete(run.flow_run_id, run.state)

    async def _delete(self, flow_run_id: UUID, state: Any) -> Purged:
        """The run's artifacts and persisted result first (Prefect keeps both when their run is deleted),
        then the run."""
        results = await asyncio.to_thread(_delete_result_file, state)
        artifacts = 0
        of_run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        while found := await self.client.read_artifacts(artifact_filter=of_run, limit=PURGE_PAGE):
            for artifact in found:
                with contextlib.suppress(ObjectNotFound):
                    await self.client.delete_artifact(artifact.id)
                artifacts += 1
        try:
            await self.client.delete_flow_run(flow_run_id)
        except ObjectNotFound:
            return Purged(0, artifacts, results)
        return Purged(1, artifacts, results)

    def ui_url(self, run: RunRecord) -> str | None:
        return f"{self.ui_base}/runs/flow-run/{run.flow_run_id}" if self.ui_base else None

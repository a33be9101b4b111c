"""`fanout-warm`: a Prefect worker type whose flow runs start in forked, pre-imported processes.

    prefect worker start --pool fanout --type fanout-warm

Prefect's `BaseWorker` schedules as for any worker; this one forks each run's process from a warm
forkserver (or hands it to a prepared spare), polls as soon as an event says a run is scheduled
(and, under a backlog, as soon as a run ends and frees a slot), kills
the process of a run that becomes Cancelling, resumes a run whose process died, stands by for the other
workers' runs (resuming one whose host died), and reconciles its pool when it starts. It serves `process`
work pools, so Prefect's `process` worker keeps working on the same pool. docs/design/warm-worker.md
explains each part.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any, Final
from uuid import UUID

import anyio
import anyio.abc
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import Flow as APIFlow
from prefect.client.schemas.objects import FlowRun, WorkQueue
from prefect.client.schemas.responses import DeploymentResponse, WorkerFlowRunResponse
from prefect.events import Event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.exceptions import InfrastructureNotFound, PrefectHTTPStatusError
from prefect.filesystems import WritableFileSystem
from prefect.settings import get_current_settings
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult
from pydantic import Field, PrivateAttr

from fanout.core.prefect_adapter import FLOW_RUN_RESOURCE, flow_run_id_of, related_objects
from fanout.core.settings import worker_settings
from fanout.service.reconcile import reconcile
from fanout.storage.checkpoints import result_storage
from fanout.worker.standby import Standby
from fanout.worker.warm_processes import CommandProcess, FlowRunProcess, WarmProcesses, kill, preload_modules
from fanout.worker.warm_recovery import describe_exit, recover_after_exit
from fanout.worker.warm_spare import DeploymentSource

WORKER_TYPE = "fanout-warm"
WAKE_EVENTS = ["prefect.flow-run.Scheduled", "prefect.flow-run.AwaitingRetry"]
CANCEL_EVENT = "prefect.flow-run.Cancelling"
CANCEL_POLL_SECONDS = 5.0
"""How often the states of this worker's running runs are read, in case a Cancelling event was missed."""
RESUBSCRIBE_SECONDS = 2.0
"""Pause before subscribing again after the event stream broke (the poll covers the gap)."""
SCHEDULED_ROUTE: Final = "/work_pools/{name}/get_scheduled_flow_runs"
RECENT_READ_SECONDS = 5.0
"""How long the worker reuses a deployment or flow it read: Prefect's worker reads a run's deployment twice
as it submits the run (to see that it exists, then for its job variables), and a backlog's runs share one."""
LABELS_AFTER_SECONDS = 1.0
"""How long after a run's hand-over the worker labels the run: its process has proposed Running by then, and each
request that reaches the server beside that process's first ones delays them."""
SPARE_AFTER_SECONDS = 2.0
"""When a run took the spare, the next spare is forked when that run's process ends, or this long after the
hand-over if it is still running: not at once, when preparing it would take CPU from the run's own start."""


def run_environment(env: Mapping[str, str | None], inherited: Mapping[str, str]) -> dict[str, str]:
    """The variables a run's process must set: its job environment less the Prefect settings the
    forkserver already has.

    Prefect puts the worker's own settings into every run's environment, spelled its
    own way (`False` for `false`, `5.0` for `5`). Applied in the child they would look
    like changed settings and make it read all of Prefect's settings again on every
    start; they are the forkserver's settings already, as it was started with the
    worker's environment.
    """
    return {name: value for name, value in env.items() if value is not None and inherited.get(name) != value}


Read = Callable[[UUID], Awaitable[Any]]
READS = ("read_deployment", "read_flow")


def reuse_recent_reads(client: object, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
    """Make `client` answer a read of a deployment or flow it made less than `seconds` ago, or still has on the
    way, from that read."""
    for name in READS:
        setattr(client, name, _recent(getattr(client, name), seconds, clock))


def _recent(read: Read, seconds: float, clock: Callable[[], float]) -> Read:
    kept: dict[UUID, tuple[float, asyncio.Future[Any]]] = {}

    async def reading(object_id: UUID) -> Any:
        now = clock()
        hit = kept.get(object_id)
        if hit is None or now - hit[0] >= seconds or _failed(hit[1]):
            hit = kept[object_id] = (now, asyncio.ensure_future(read(object_id)))
        return copy.deepcopy(
            await asyncio.shield(hit[1])
        )  # each caller its own: Prefect's worker changes what it reads

    return reading


def _failed(read: asyncio.Future[Any]) -> bool:
    """A read that ended in an error (or was cancelled): the next caller reads again."""
    return read.done() and (read.cancelled() or read.exception() is not None)


def related_ids(event: Event, pool: str) -> dict[str, UUID]:
    """The deployment and flow of the flow run an event is about, by kind, when the run is in work pool `pool`
    (the names the server relates its state events to); empty for a run of another pool."""
    related = {resource.role: resource for resource in event.related}
    work_pool = related.get("work-pool")
    if work_pool is None or work_pool.name != pool:
        return {}
    found: dict[str, UUID] = {}
    for kind in ("deployment", "flow"):
        resource = related.get(kind)
        prefix = f"prefect.{kind}."
        if resource is not None and resource.id.startswith(prefix):
            with contextlib.suppress(ValueError):
                found[kind] = UUID(resource.id.removeprefix(prefix))
    return found


class SettingsEnvironment:
    """Prefect's settings as the environment variables a run's process is given, computed once per settings
    object.

    Prefect's worker computes them for every run it submits, between the run's Pending
    state and its start, and that takes milliseconds of CPU for a few hundred
    settings. The settings object in force is not changed in place (a change is a new
    object, as `temporary_settings` makes one), so its variables are computed again
    only when another object is in force.
    """

    def __init__(self) -> None:
        self._settings: object = None
        self._variables: dict[str, str] = {}

    def __call__(self) -> dict[str, str]:
        settings = get_current_settings()
        if settings is not self._settings:
            self._variables = settings.to_environment_variables(exclude_unset=True)
            self._settings = settings
        return dict(self._variables)


settings_environment = SettingsEnvironment()


class WarmJobConfiguration(BaseJobConfiguration):
    """The process worker's job configuration, so a `process` pool's template fits as it is."""

    stream_output: bool = Field(default=True)
    working_dir: Path | None = Field(default=None)
    _deployment_source: DeploymentSource | None = PrivateAttr(default=None)
    _own_command: str | None = PrivateAttr(default=None)
    _related: dict[str, str] = PrivateAttr(default_factory=dict)

    def prepare_for_flow_run(
        self,
        flow_run: FlowRun,
        deployment: DeploymentResponse | None = None,
        flow: APIFlow | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Prefect's preparation, keeping what the run's process needs of the deployment and flow Prefect just read.

        The flow-run process then takes the flow without reading the deployment
        again (src/fanout/worker/warm_child.py), and relates its events to the
        flow and deployment without reading them: API calls saved on every start.
        """
        self._own_command = self.command  # set by the deployment or pool (Prefect fills in a default below)
        super().prepare_for_flow_run(flow_run, deployment, flow, *args, **kwargs)
        if deployment is not None:
            self._deployment_source = DeploymentSource(deployment.entrypoint, deployment.pull_steps)
        self._related = related_objects(flow, deployment, None, None)

    @classmethod
    def _base_environment(cls) -> dict[str, str]:
        """Prefect's settings as environment variables, as Prefect's job configuration gives every run, without
        computing them again while the same settings are in force. (Prefect's hook, overridden:
        tests/unit/test_prefect_adapter.py checks that Prefect still calls it.)"""
        return settings_environment()

    @property
    def own_command(self) -> str | None:
        """The `command` job variable, when the deployment or its pool sets one: the run then starts
        with it in a new interpreter, as on a `process` worker, not in a warm process."""
        return self._own_command

    @property
    def related(self) -> dict[str, str]:
        """The run's flow and deployment as Prefect read them when the run was submitted (JSON by kind)."""
        return self._related

    @property
    def deployment_source(self) -> DeploymentSource | None:
        """The entrypoint and pull steps of the run's deployment, as read when the run was submitted."""
        return self._deployment_source


class WarmVariables(BaseVariables):
    """Job variables of a `fanout-warm` pool: those of a `process` pool."""

    stream_output: bool = Field(default=True, description="Flow-run output goes to the worker's output.")
    working_dir: Path | None = Field(
        default=None, title="Working Directory", description="Folder the flow run starts in (else the deployment's)."
    )


class WarmWorkerResult(BaseWorkerResult):
    """The ended flow-run process: its pid, and 0 once the worker has put the run where it belongs."""


class FanoutWarmWorker(BaseWorker[WarmJobConfiguration, WarmVariables, WarmWorkerResult]):
    """Runs each flow run in a process forked from a pre-imported forkserver (see the module docstring)."""

    type = WORKER_TYPE
    job_configuration = WarmJobConfiguration
    job_configuration_variables = WarmVariables
    _description = "Runs flow runs in pre-started processes with Prefect and the flow already imported."
    _display_name = "fanout warm"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = worker_settings()
        self._settings = settings
        self._max_auto_retries = settings.max_auto_retries
        self._processes = WarmProcesses(preload_modules(settings.processor), spare=settings.warm_spare)
        self._running: dict[UUID, int] = {}
        self._wake: anyio.Event | None = None
        self._services: anyio.abc.TaskGroup | None = None
        self._inherited = settings_environment()
        self._reconciling = False
        self._found = 0
        self._backlog = False

    async def setup(self) -> None:
        await super().setup()
        reuse_recent_reads(self.client, RECENT_READ_SECONDS)
        self._wake = anyio.Event()
        services = await self._exit_stack.enter_async_context(anyio.create_task_group())
        self._exit_stack.callback(services.cancel_scope.cancel)  # stop the services on exit
        if self._settings.standby:  # it only changes states: it stands by while the processes warm up
            services.start_soon(self._standby().run)
        await anyio.to_thread.run_sync(self._processes.warm_up)
        self._exit_stack.callback(self._processes.stop)  # the spare ends with the worker
        services.start_soon(self._watch_events)
        services.start_soon(self._poll_on_wake)
        services.start_soon(self._poll_cancellations)
        services.start_soon(self._reconcile)
        self._services = services
        self._logger.info("Warm processes ready (forkserver preloaded).")

    async def run(
        self,
        flow_run: FlowRun,
        configuration: WarmJobConfiguration,
        task_status: anyio.abc.TaskStatus[int] | None = None,
    ) -> WarmWorkerResult:
        """Start the run's process (the spare, else a fork), report its pid, wait for it, recover the run if it died."""
        logger = self.get_flow_run_logger(flow_run)
        process = self._start(flow_run, configuration)
        assert process.pid is not None
        self._running[flow_run.id] = process.pid
        if task_status is not None:
            task_status.started(process.pid)
        if self._services is not None:
            self._services.start_soon(self._replenish, SPARE_AFTER_SECONDS)
        try:
            await anyio.to_thread.run_sync(process.join, abandon_on_cancel=True)
        finally:
            self._running.pop(flow_run.id, None)
        exit_code = process.exitcode
        if exit_code:
            logger.warning("Flow run process %s ended with %s.", process.pid, describe_exit(exit_code))
        outcome = await recover_after_exit(self.client, flow_run.id, process.pid, exit_code, self._max_auto_retries)
        if outcome.message:
            logger.warning(outcome.message)
        await self._replenish()
        if self._backlog and self._wake is not None:
            self._wake.set()  # BaseWorker frees this run's slot as it returns: fill it from the backlog now
        # 0: the run's state is taken care of; BaseWorker would otherwise report a second crash.
        return WarmWorkerResult(identifier=str(process.pid), status_code=0)

    async def _propose_submitting_state(self, flow_run: FlowRun) -> None:
        """No Submitting state: a warm run's process starts within milliseconds of Pending, and each state
        costs the server a transaction, an event and the automations' evaluation of it. (Prefect's hook,
        overridden: tests/unit/test_prefect_adapter.py checks that Prefect still calls it.)"""

    def _emit_flow_run_submitted_event(self, configuration: BaseJobConfiguration) -> None:
        """No `prefect.worker.submitted-flow-run` event, and so no `executed-flow-run` event after it (Prefect
        emits that one only after a submitted one): each event costs the server a write, the automations'
        evaluation and a message to every subscriber, and nothing reads these two. Which worker took the run
        stays on the run (its labels) and in its logs. (Prefect's hook, overridden:
        tests/unit/test_prefect_adapter.py checks that Prefect still calls it.)"""

    async def _give_worker_labels_to_flow_run(self, flow_run_id: UUID) -> None:
        """Prefect's labels naming this worker and its pool, sent `LABELS_AFTER_SECONDS` after the run's start
        instead of before it: Prefect awaits them between Pending and the hand-over, a round trip every start
        would wait for, and sent at the hand-over they would reach the server with the process's first requests."""
        if self._services is None:
            await self._label(flow_run_id)
            return
        self._services.start_soon(self._label, flow_run_id, LABELS_AFTER_SECONDS)

    async def _label(self, flow_run_id: UUID, after: float = 0.0) -> None:
        """Prefect's worker labels on the run, `after` seconds from now; a failure is logged (the run goes on
        without them)."""
        await anyio.sleep(after)
        try:
            await super()._give_worker_labels_to_flow_run(flow_run_id)
        except Exception as error:  # noqa: BLE001 - labels only help a person find the worker
            self._logger.warning("Could not label flow run %s with its worker: %s", flow_run_id, error)

    async def get_and_submit_flow_runs(self) -> list[FlowRun]:
        """Prefect's poll, noting whether it left scheduled runs for lack of a free slot (a backlog):
        then each run that ends polls again at once, instead of its slot idling until the next poll."""
        submitted = await super().get_and_submit_flow_runs()
        self._backlog = self._found > len(submitted)
        return submitted

    async def _get_scheduled_flow_runs(self) -> list[Any]:
        """Prefect's poll of the pool, asking for no more scheduled runs than this worker has free slots,
        plus one to see whether more wait. Prefect's own poll asks for up to 200 whole flow runs; under a
        backlog, repeated as each run ends, that read cost the server more than the runs themselves."""
        limit = self._poll_limit()
        found = await (super()._get_scheduled_flow_runs() if limit is None else self._scheduled(limit))
        self._found = len(found)
        return found

    def _poll_limit(self) -> int | None:
        """The free slots plus one; None for a worker without a limit."""
        limiter = self._limiter
        return None if limiter is None else int(limiter.available_tokens) + 1

    async def _scheduled(self, limit: int) -> list[WorkerFlowRunResponse]:
        """The pool's scheduled runs, at most `limit`, as Prefect's poll asks for them (its REST route's `limit`)."""
        scheduled_before = datetime.now(UTC) + timedelta(seconds=int(self._prefetch_seconds))
        body = {
            "work_queue_names": sorted(self._work_queues),
            "scheduled_before": scheduled_before.isoformat(),
            "limit": limit,
        }
        try:
            response = await self.client.request(
                "POST", SCHEDULED_ROUTE, path_params={"name": self._work_pool_name}, json=body
            )
        except PrefectHTTPStatusError as error:
            if error.response.status_code == HTTPStatus.NOT_FOUND:
                return []  # the pool is created again at the next heartbeat, as Prefect's poll leaves it
            raise
        return WorkerFlowRunResponse.model_validate_list(response.json())

    def _start(self, flow_run: FlowRun, configuration: WarmJobConfiguration) -> FlowRunProcess:
        """The run's process: a warm one, or a new interpreter running the deployment's own `command`."""
        if configuration.own_command:
            env = {name: value for name, value in configuration.env.items() if value is not None}
            return CommandProcess(configuration.own_command, env, configuration.working_dir)
        env = run_environment(configuration.env, self._inherited)
        related = {**configuration.related, **self._pool_related(flow_run)}
        return self._processes.start(flow_run, env, configuration.working_dir, configuration.deployment_source, related)

    def _pool_related(self, flow_run: FlowRun) -> dict[str, str]:
        """The run's work pool (the one this worker polls) and work queue, for the run's events to relate to."""
        pool = self._work_pool
        if pool is None:
            return {}
        queue = None
        if flow_run.work_queue_id is not None and flow_run.work_queue_name:
            queue = WorkQueue(id=flow_run.work_queue_id, name=flow_run.work_queue_name, work_pool_id=pool.id)
        return related_objects(None, None, queue, pool)

    async def _replenish(self, after: float = 0.0) -> None:
        """Fork the next run's spare (none if one is ready); a failure only means the next run is forked when it comes."""
        await anyio.sleep(after)
        try:
            await anyio.to_thread.run_sync(self._processes.replenish)
        except Exception as error:  # noqa: BLE001 - runs still start without a spare
            self._logger.warning("Could not start a spare flow-run process: %s", error)

    async def kill_infrastructure(
        self,
        infrastructure_pid: str,
        configuration: WarmJobConfiguration,
        grace_seconds: int = 30,
    ) -> None:
        """Kill the process of a run this worker started (BaseWorker's cancel of a run not yet Running)."""
        pid = int(infrastructure_pid.rsplit(":", 1)[-1])
        if pid not in self._running.values() or not kill(pid):
            raise InfrastructureNotFound(f"no flow-run process {pid} on this worker")

    async def _cancel(self, flow_run_id: UUID) -> None:
        """Kill a Cancelling run's process; `run()` then marks the run Cancelled."""
        pid = self._running.get(flow_run_id)
        if pid is not None and kill(pid):
            self._logger.info("Cancelling flow run %s: killed its process %s.", flow_run_id, pid)

    async def _watch_events(self) -> None:
        """React to new runs and cancellations as their events arrive; resubscribe if the stream breaks."""
        names = EventNameFilter(name=[*WAKE_EVENTS, CANCEL_EVENT])
        event_filter = EventFilter(event=names, resource=EventResourceFilter(id_prefix=[FLOW_RUN_RESOURCE]))
        broke = False
        while True:
            try:
                async with get_events_subscriber(filter=event_filter) as events:
                    if broke and self._services is not None:  # the server may have restarted: its windows are gone
                        self._services.start_soon(self._reconcile)
                    broke = False
                    async for event in events:
                        if event.event == CANCEL_EVENT:
                            if (run_id := flow_run_id_of(event)) is not None:
                                await self._cancel(run_id)
                        else:
                            self._read_ahead(event)
                            self._wake_up()
            except Exception as error:  # noqa: BLE001 - the poll covers the gap; keep listening
                self._logger.warning("Event stream broke (%s); subscribing again.", error)
                broke = True
            await anyio.sleep(RESUBSCRIBE_SECONDS)

    async def _reconcile(self) -> None:
        """One reconcile pass over this worker's pool, unless one is under way; a failure is logged."""
        if self._reconciling:
            return
        self._reconciling = True
        try:
            settings = worker_settings()
            storage = await anyio.to_thread.run_sync(result_storage, settings)
            done = await reconcile(self.client, settings, storage, [self._work_pool_name])
            for outcome in done:
                if outcome.message:
                    self._logger.warning(
                        "Reconciled flow run %s: %s. %s", outcome.flow_run_id, outcome.action, outcome.message
                    )
        except Exception as error:  # noqa: BLE001 - the automations and the next pass remain
            self._logger.warning("Reconcile pass failed: %r", error)
        finally:
            self._reconciling = False

    def _standby(self) -> Standby:
        """This worker's standby for the other workers' runs; a run it resumes wakes this worker's poll."""
        return Standby(
            self.client,
            self._settings,
            self._work_pool_name,
            self._running.keys,
            self._result_storage,
            resumed=self._wake_up,
            log=self._logger,
        )

    def _result_storage(self) -> WritableFileSystem:
        return result_storage(self._settings)

    def _read_ahead(self, event: Event) -> None:
        """Read the deployment and flow of a run scheduled in this worker's pool while the poll that wakes for it
        is on its way: Prefect's worker reads them one after the other as it submits the run, once its poll
        has answered, and then finds these reads (`reuse_recent_reads`)."""
        if self._services is None:
            return
        found = related_ids(event, self._work_pool_name)
        if "deployment" in found:
            self._services.start_soon(self._read_quietly, self.client.read_deployment, found["deployment"])
        if "flow" in found:
            self._services.start_soon(self._read_quietly, self.client.read_flow, found["flow"])

    async def _read_quietly(self, read: Read, object_id: UUID) -> None:
        """A read ahead; its failure is the submission's to meet (it reads again), not this task's."""
        with contextlib.suppress(Exception):
            await read(object_id)

    def _wake_up(self) -> None:
        if self._wake is not None:
            self._wake.set()

    async def _poll_on_wake(self) -> None:
        """Poll the pool right away when a run was scheduled (coalescing a burst of events into one poll)."""
        while True:
            assert self._wake is not None
            await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self.get_and_submit_flow_runs()
            except Exception as error:  # noqa: BLE001 - the regular poll retries
                self._logger.warning("Immediate poll failed: %s", error)

    async def _poll_cancellations(self) -> None:
        """Cancel running runs whose Cancelling event this worker missed."""
        while True:
            await anyio.sleep(CANCEL_POLL_SECONDS)
            if not self._running:
                continue
            try:
                runs = await self.client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(self._running)))
                )
            except Exception as error:  # noqa: BLE001 - try again next round
                self._logger.warning("Reading running flow runs failed: %s", error)
                continue
            for run in runs:
                if run.state is not None and run.state.is_cancelling():
                    await self._cancel(run.id)

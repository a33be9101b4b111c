"""The Prefect automations that resume a fanout run by itself after its flow process or host dies.

The open-source Prefect server leaves a run whose process died Running. Four automations, scoped to
fanout's deployments, act on fanout's liveness events and Prefect's heartbeats: *silent* and *retry*
put the same flow run back to AwaitingRetry (its checkpoints carry over), *heartbeats* is the backstop
that marks it Crashed, and *give-up* fails it after the last automatic retry. docs/design/crash-resume.md
describes each window.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID

from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from fanout.core.liveness import ALIVE_EVENT
from fanout.core.settings import ResumeSettings

HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"
LEAVING_RUNNING_STATES = (
    "Completed",
    "Failed",
    "TimedOut",
    "Crashed",
    "Cancelling",
    "Cancelled",
    "Paused",
    "Suspended",
    "AwaitingRetry",
)
"""The states a Running flow run can move to that end its alive events and heartbeats. A window opened by
one of those signs of life waits for another, or for one of these. Every event an automation expects
costs the server a write transaction for every run, so the states that never come straight after a sign
of life are left out: Pending, Submitting, Running, and Scheduled (a run is put back as AwaitingRetry;
the first Scheduled of every run would otherwise be held by the heartbeat window)."""
AFTER_CRASH_STATES = (
    "AwaitingRetry",
    "Scheduled",
    "Failed",
    "Cancelling",
    "Cancelled",
)
"""The states that show a crashed run was already dealt with. A run is only Pending or Running again
after AwaitingRetry or Scheduled, and only Completed after those (or by hand), so those three are not
expected: every run's Running and Completed would otherwise cost a write transaction."""

SILENT = "fanout: resume runs that fall silent"
HEARTBEATS = "fanout: crash runs whose heartbeats stop"
RETRY = "fanout: retry crashed runs"
GIVE_UP = "fanout: fail crashed runs that are not retried"


def flow_run_event(state_name: str) -> str:
    """The event Prefect emits when a flow run enters the state called `state_name`."""
    return f"prefect.flow-run.{state_name}"


def left_running() -> set[str]:
    """The events of a Running flow run's move to a state in which it sends no signs of life."""
    return {flow_run_event(state) for state in LEAVING_RUNNING_STATES}


def deployment_scope(deployment_ids: Sequence[UUID]) -> dict[str, Any]:
    """`match_related` that limits an automation to flow runs of these deployments."""
    return {
        "prefect.resource.id": [f"prefect.deployment.{deployment_id}" for deployment_id in deployment_ids],
        "prefect.resource.role": "deployment",
    }


def worker_environment(settings: ResumeSettings) -> dict[str, str]:
    """What a fanout worker's environment needs so its flow runs send heartbeats."""
    return {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(settings.heartbeat_seconds)}


def silent_automation(deployment_ids: Sequence[UUID], settings: ResumeSettings) -> AutomationCore:
    """Put a run back to AwaitingRetry when neither an alive event nor a move out of Running came within the window."""
    silent = settings.silent_after_seconds
    return AutomationCore(
        name=SILENT,
        description=f"No sign of life for {silent}s: the host is presumed dead; retry the same run.",
        enabled=settings.max_auto_retries > 0,
        trigger=EventTrigger(
            posture=Posture.Proactive,
            after={ALIVE_EVENT},
            expect={ALIVE_EVENT, *left_running()},
            match={"prefect.resource.id": "prefect.flow-run.*", "prefect.run-count": retry_run_counts(settings)},
            match_related=deployment_scope(deployment_ids),
            for_each={"prefect.resource.id"},
            within=timedelta(seconds=silent),
            threshold=1,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.SCHEDULED,
                name="AwaitingRetry",
                message=f"fanout: no sign of life for {silent}s, the host is presumed dead; automatic retry "
                f"(at most {settings.max_auto_retries})",
            )
        ],
    )


def heartbeat_automation(deployment_ids: Sequence[UUID], settings: ResumeSettings) -> AutomationCore:
    """Mark a run Crashed when neither a heartbeat nor a move out of Running arrives within the window."""
    return AutomationCore(
        name=HEARTBEATS,
        description=f"No heartbeat for {settings.crash_after_seconds}s: the host is presumed dead.",
        trigger=EventTrigger(
            posture=Posture.Proactive,
            after={HEARTBEAT_EVENT},
            expect={HEARTBEAT_EVENT, *left_running()},
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=deployment_scope(deployment_ids),
            for_each={"prefect.resource.id"},
            within=timedelta(seconds=settings.crash_after_seconds),
            threshold=1,
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"fanout: no heartbeat for {settings.crash_after_seconds}s, the host is presumed dead",
            )
        ],
    )


def retry_run_counts(settings: ResumeSettings) -> list[str]:
    """Run counts at which a crash is retried: 1..max_auto_retries ("0" never: see module doc)."""
    return [str(count) for count in range(1, settings.max_auto_retries + 1)]


def retry_automation(deployment_ids: Sequence[UUID], settings: ResumeSettings) -> AutomationCore:
    """Put a Crashed run back to AwaitingRetry (the UI's Retry) unless it was retried enough."""
    return AutomationCore(
        name=RETRY,
        description=f"Retry the same flow run after a crash, up to {settings.max_auto_retries} times.",
        enabled=settings.max_auto_retries > 0,
        trigger=_after_crash(
            deployment_ids, timedelta(seconds=settings.retry_window_seconds), run_counts=retry_run_counts(settings)
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.SCHEDULED,
                name="AwaitingRetry",
                message=f"fanout: automatic retry after a crash (at most {settings.max_auto_retries})",
            )
        ],
    )


def give_up_automation(deployment_ids: Sequence[UUID], settings: ResumeSettings) -> AutomationCore:
    """Fail a run that crashed once more after its last automatic retry, saying what to do.

    Reactive on purpose: a proactive "not retried within a window" trigger keeps one
    window per run open from the first crash, so it misses a crash after a retry.
    """
    return AutomationCore(
        name=GIVE_UP,
        description="A run that crashed again after its last automatic retry becomes Failed, saying why.",
        trigger=EventTrigger(
            posture=Posture.Reactive,
            expect={flow_run_event("Crashed")},
            match={
                "prefect.resource.id": "prefect.flow-run.*",
                "prefect.run-count": str(settings.max_auto_retries + 1),
            },
            match_related=deployment_scope(deployment_ids),
            for_each={"prefect.resource.id"},
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.FAILED,
                force=True,
                message=(
                    f"fanout: crashed again after {settings.max_auto_retries} automatic retries; "
                    "Retry the run (or restart the instance) to resume from its checkpoints"
                ),
            )
        ],
    )


def _after_crash(deployment_ids: Sequence[UUID], within: timedelta, run_counts: list[str]) -> EventTrigger:
    """Fires when a run crashed at one of `run_counts` and no later state followed within `within`."""
    match: dict[str, Any] = {"prefect.resource.id": "prefect.flow-run.*", "prefect.run-count": run_counts}
    return EventTrigger(
        posture=Posture.Proactive,
        after={flow_run_event("Crashed")},
        expect={flow_run_event(state) for state in AFTER_CRASH_STATES},
        match=match,
        match_related=deployment_scope(deployment_ids),
        for_each={"prefect.resource.id"},
        within=within,
        threshold=1,
    )


def fanout_automations(deployment_ids: Sequence[UUID], settings: ResumeSettings) -> list[AutomationCore]:
    """The four automations for these deployments."""
    if not deployment_ids:
        raise ValueError("no fanout deployment to scope the automations to")
    builders = (silent_automation, heartbeat_automation, retry_automation, give_up_automation)
    return [builder(deployment_ids, settings) for builder in builders]


@dataclass(frozen=True)
class Applied:
    """What `apply_automations` did with one automation."""

    name: str
    id: UUID
    action: str  # "created" or "updated"


def apply_automations(client: Any, deployment_ids: Sequence[UUID], settings: ResumeSettings) -> list[Applied]:
    """Create the automations, or update the ones with the same names: running it twice changes nothing.

    `client` is a sync `PrefectClient` (`get_client(sync_client=True)`).
    Duplicates with the same name (say, from a race) are removed.
    """
    applied: list[Applied] = []
    for automation in fanout_automations(deployment_ids, settings):
        existing = client.read_automations_by_name(automation.name)
        if existing:
            keep, *extra = existing
            client.update_automation(keep.id, automation)
            for duplicate in extra:
                client.delete_automation(duplicate.id)
            applied.append(Applied(automation.name, keep.id, "updated"))
        else:
            applied.append(Applied(automation.name, client.create_automation(automation), "created"))
    return applied


def fanout_deployment_ids(client: Any, flow_name: str, names: Iterable[str] = ()) -> list[UUID]:
    """Ids of the flow's deployments (all of them, or those named `flow/deployment`)."""
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName

    wanted = set(names)
    deployments = client.read_deployments(flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])))
    return [
        deployment.id
        for deployment in deployments
        if not wanted or f"{flow_name}/{deployment.name}" in wanted or deployment.name in wanted
    ]


class NoFanoutDeployment(LookupError):
    """There is no fanout deployment on the server to scope the automations to."""


def apply_fanout_automations(
    settings: ResumeSettings,
    deployments: Iterable[str] = (),
    api_url: str | None = None,
    auth_string: str | None = None,
) -> list[Applied]:
    """Apply the automations for fanout's deployments on `api_url` (else where `PREFECT_API_URL` points;
    `auth_string` for a server started with `PREFECT_SERVER_API_AUTH_STRING`).

    `fanout up` (src/fanout/localstack/stack.py) and `fanout automations apply` both call this after deploying.
    """
    from prefect.client.orchestration import SyncPrefectClient, get_client

    from fanout.seed import FLOW_NAME

    client_for = SyncPrefectClient(api_url, auth_string=auth_string) if api_url else get_client(sync_client=True)
    with client_for as client:
        ids = fanout_deployment_ids(client, FLOW_NAME, deployments)
        if not ids:
            raise NoFanoutDeployment(
                f"no deployment of flow {FLOW_NAME!r}{' named ' + ', '.join(deployments) if deployments else ''} "
                "on this server; register it first (prefect deploy --all --no-prompt)"
            )
        return apply_automations(client, ids, settings)


def apply_project_automations(
    settings: ResumeSettings, api_url: str | None = None, auth_string: str | None = None
) -> list[Applied]:
    """Apply the automations to every deployment on the server: what a stack serving a Prefect project of
    its own does, as its server holds that project's deployments only. None when it has no deployment."""
    from prefect.client.orchestration import SyncPrefectClient, get_client

    client_for = SyncPrefectClient(api_url, auth_string=auth_string) if api_url else get_client(sync_client=True)
    with client_for as client:
        ids = [deployment.id for deployment in client.read_deployments()]
        return apply_automations(client, ids, settings) if ids else []

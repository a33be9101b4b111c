"""Resume the runs a restart left behind: Running or Pending in Prefect, with no living process.

The automations' windows live in the Prefect server's memory, so after a restart a run that was
Running can stay Running for good. Whatever comes back (`fanout up`, a warm worker) makes one reconcile
pass: it watches the pool's unfinished runs for liveness, puts back to AwaitingRetry those with nothing
behind them, and claims each in result storage first, so two reconcilers never both move one.
docs/design/crash-resume.md gives the steps.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import anyio
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    WorkPoolFilter,
    WorkPoolFilterName,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.responses import OrchestrationResult, SetStateStatus
from prefect.events.filters import (
    EventFilter,
    EventIDFilter,
    EventNameFilter,
    EventOccurredFilter,
    EventResourceFilter,
)
from prefect.filesystems import WritableFileSystem
from prefect.states import AwaitingRetry, Crashed, Failed

from fanout.core.liveness import ALIVE_EVENT
from fanout.core.settings import ResumeSettings
from fanout.storage import lease
from fanout.storage.checkpoints import KEY_ROOT
from fanout.storage.lease import LeaseUnsupported, claim_once, owner_gone

logger = logging.getLogger(__name__)

RESUMED = "resumed"
GAVE_UP = "gave-up"
CLAIMED_ELSEWHERE = "claimed-elsewhere"
MOVED_ON = "moved-on"
WATCHED_STATES = [StateType.RUNNING, StateType.PENDING]
PENDING_GRACE_SECONDS = 60.0
"""How long a run must have been Pending before a pass takes it for one whose worker died."""
CATCH_UP_SECONDS = 60.0
PROBE_EVENT = "fanout.reconcile.probe"
PAGE = 200


@dataclass(frozen=True)
class Reconciled:
    """What a reconcile pass did with one run it found without a living process."""

    flow_run_id: UUID
    action: str
    message: str = ""


@dataclass(frozen=True)
class Seen:
    """A run as the pass first saw it: its state, to tell whether it moved on during the watch."""

    run: FlowRun

    @property
    def state_id(self) -> UUID | None:
        return self.run.state.id if self.run.state else None


Sleep = Callable[[float], Any]


async def reconcile(
    client: PrefectClient,
    settings: ResumeSettings,
    storage: WritableFileSystem,
    pools: Sequence[str],
    sleep: Sleep = anyio.sleep,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[Reconciled]:
    """One pass over the pools' Running and Pending runs (see the module docstring); what it did."""
    seen = [Seen(run) for run in await _unfinished(client, pools)]
    if not seen:
        return []
    watch_began = now()
    await sleep(float(settings.silent_after_seconds) + _pending_grace_left(seen, watch_began))
    if not await _events_caught_up(client, sleep):
        logger.warning("reconcile pass skipped: Prefect's stored events lag behind, so silence proves nothing")
        return []
    done: list[Reconciled] = []
    for first in seen:
        run = await client.read_flow_run(first.run.id)
        if run.state is None or run.state.id != first.state_id:
            continue  # it moved on by itself: alive, or someone else saw to it
        if not await _orphaned(client, run, watch_began):
            continue
        what = "Running" if run.state.type == StateType.RUNNING else "Pending"
        stuck = (
            f"Flow run was {what} with no living process after a restart "
            f"(no sign of life for {settings.silent_after_seconds}s)."
        )
        outcome = await resume_orphan(client, run, storage, settings, stuck)
        if outcome is not None:
            level = logging.WARNING if outcome.action in (RESUMED, GAVE_UP) else logging.INFO
            logger.log(level, "flow run %s: %s %s", run.id, outcome.action, outcome.message)
            done.append(outcome)
    return done


async def _unfinished(client: PrefectClient, pools: Sequence[str]) -> list[FlowRun]:
    """The pools' runs that are Running or Pending now."""
    state = FlowRunFilterState(type=FlowRunFilterStateType(any_=WATCHED_STATES))
    found: list[FlowRun] = []
    while True:
        page = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(state=state),
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=list(pools))),
            limit=PAGE,
            offset=len(found),
        )
        found += page
        if len(page) < PAGE:
            return found


def _pending_grace_left(seen: Sequence[Seen], now: datetime) -> float:
    """Seconds until every Pending run seen has been Pending for `PENDING_GRACE_SECONDS` (a process
    that is slow to start is not an orphan)."""
    ages = [
        (now - first.run.state.timestamp).total_seconds()
        for first in seen
        if first.run.state is not None and first.run.state.type == StateType.PENDING
    ]
    return max((PENDING_GRACE_SECONDS - age for age in ages), default=0.0) if ages else 0.0


async def _events_caught_up(client: PrefectClient, sleep: Sleep) -> bool:
    """Whether the server stores events as they come: a probe event sent now is found stored within
    `CATCH_UP_SECONDS`. Only then does a missing alive event mean silence, not a backlog."""
    probe = uuid4()
    event = {
        "id": str(probe),
        "occurred": datetime.now(UTC).isoformat(),
        "event": PROBE_EVENT,
        "resource": {"prefect.resource.id": f"{PROBE_EVENT}.{probe}"},
    }
    (await client.request("POST", "/events", json=[event])).raise_for_status()
    for _ in range(int(CATCH_UP_SECONDS)):
        page = await client.read_events(filter=EventFilter(id=EventIDFilter(id=[probe])), limit=1)
        if page.events:
            return True
        await sleep(1.0)
    return False


def _lease_holder_alive_here(storage: WritableFileSystem, run: FlowRun) -> bool:
    """Whether the run's own process holds its instance's lease and is alive on this host."""
    try:
        record = lease.current(storage, instance_of(run))
    except (LeaseUnsupported, OSError):
        return False
    return (
        record is not None
        and record.flow_run_id == str(run.id)
        and not record.released
        and record.owner.partition(":")[0] == socket.gethostname()
        and not owner_gone(record.owner)
    )


async def _orphaned(client: PrefectClient, run: FlowRun, watch_began: datetime) -> bool:
    """Whether nothing lives behind the run (its state did not change during the watch)."""
    assert run.state is not None
    if run.state.type == StateType.PENDING:
        return True
    newest = await _newest_alive(client, run.id, since=run.state.timestamp)
    return newest is not None and newest < watch_began


async def _newest_alive(client: PrefectClient, run_id: UUID, since: datetime) -> datetime | None:
    """When the run last said it was alive since `since`, or None if it never did."""
    page = await client.read_events(
        filter=EventFilter(
            occurred=EventOccurredFilter(since=since),
            event=EventNameFilter(name=[ALIVE_EVENT]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{run_id}"]),
        ),
        limit=1,
    )
    return page.events[0].occurred if page.events else None


def instance_of(run: FlowRun) -> str:
    """The run's instance id: its request's, else its own flow run id (as the flow decides it)."""
    request = run.parameters.get("request") if isinstance(run.parameters, dict) else None
    named = request.get("instance_id") if isinstance(request, dict) else None
    return str(named) if named else str(run.id)


def claim_key(run: FlowRun) -> str:
    """The claim on resuming this run from the state it is stuck in (one per state it ever enters)."""
    assert run.state is not None
    return f"{KEY_ROOT}/{instance_of(run)}/resumes/{run.id}-{run.state.id}"


async def resume_orphan(
    client: PrefectClient, run: FlowRun, storage: WritableFileSystem, settings: ResumeSettings, stuck: str
) -> Reconciled | None:
    """Resume (or give up on) a run found with nothing behind it, if this caller is the first to claim it
    from the state it was found in; `stuck` says how it was found. None: its own process is alive on
    this host after all.

    Every resumer goes through here (a reconcile pass, a standby warm worker), so one stuck state is
    resumed once, whoever notices it and however many notice it together.
    """
    if _lease_holder_alive_here(storage, run):
        return None
    try:
        first = await anyio.to_thread.run_sync(claim_once, storage, claim_key(run), {"flow_run_id": str(run.id)})
    except LeaseUnsupported:
        first = True  # no claim possible on this storage: the state check just before is all there is
    if not first:
        return Reconciled(run.id, CLAIMED_ELSEWHERE)
    assert run.state is not None
    again = await client.read_flow_run(run.id)
    if again.state is None or again.state.id != run.state.id:
        return Reconciled(run.id, MOVED_ON)
    if run.state.type == StateType.PENDING or 1 <= run.run_count <= settings.max_auto_retries:
        return await _put_back(client, run, stuck, settings)
    await client.set_flow_run_state(run.id, Crashed(message=stuck))
    message = f"{stuck} Automatic retries exhausted ({settings.max_auto_retries} allowed)."
    await client.set_flow_run_state(run.id, Failed(message=message), force=True)
    return Reconciled(run.id, GAVE_UP, message)


async def _put_back(client: PrefectClient, run: FlowRun, stuck: str, settings: ResumeSettings) -> Reconciled:
    message = (
        f"{stuck} Resumed from its checkpoints (attempt {run.run_count + 1}, "
        f"at most {settings.max_auto_retries} automatic retries)."
    )
    result: OrchestrationResult[Any] = await client.set_flow_run_state(run.id, AwaitingRetry(message=message))
    if result.status == SetStateStatus.ACCEPT:
        return Reconciled(run.id, RESUMED, message)
    reason = getattr(result.details, "reason", None) or "no reason given"
    return Reconciled(run.id, MOVED_ON, f"Prefect answered {result.status.value} ({reason})")

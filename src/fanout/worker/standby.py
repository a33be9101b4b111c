"""A warm worker standing by for the other workers of its pool: it resumes a run whose host died.

Every deployment run says it is alive while its items run (`fanout.flow-run.alive`,
src/fanout/core/liveness.py). When a host dies, its worker and its flow process die together and
nobody reports anything: the run stays Running in Prefect. The automations notice the silence
after a window Prefect evaluates coarsely; a standby hears the same events on its own event
stream and acts within a few seconds:

1. **Listen.** It tracks, per flow run and attempt (run count), when it last heard an alive
   event. A quiet event (the run left a stage on purpose) ends the tracking: only silence that
   follows an alive event without one is taken for a death.
2. **Notice.** A run silent for `standby_silent_seconds` is read from Prefect. Unless it is still
   Running in the same attempt, in this worker's pool, and not run by this worker (which sees
   its own processes die), it is forgotten. Otherwise it gets the label `fanout.silent`, so that
   its status answers `resuming` from now on (src/fanout/service/resuming.py).
3. **Confirm.** The standby posts a probe event and waits until it comes back on its own
   stream: every event the server had received before it has then been heard, so a stream that
   lags (the standby's own pause, a slow network) is never taken for the run's silence. A run
   heard from meanwhile is left alone and unmarked.
4. **Resume once.** `resume_orphan` (src/fanout/service/reconcile.py) does the rest, as for a
   reconcile pass: a run whose process holds its lease alive on this host is left alone; the
   first resumer to create the claim named after the run's stuck state puts it back to
   AwaitingRetry (or gives up after the last automatic retry), and everyone else learns it is
   done. The AwaitingRetry event wakes the warm workers, and one of them runs the same flow run
   again from its checkpoints.

A run resumed while it was in fact alive (its process frozen longer than the window) still does
not run twice: its next attempt waits for the instance lease its first attempt holds.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Collection
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import anyio
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.events import Event
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
from prefect.filesystems import WritableFileSystem

from fanout.core.liveness import ALIVE_EVENT, QUIET_EVENT
from fanout.core.prefect_adapter import FLOW_RUN_RESOURCE, flow_run_id_of
from fanout.core.settings import WarmWorkerSettings
from fanout.service.reconcile import Reconciled, resume_orphan
from fanout.service.resuming import SILENT_LABEL

logger = logging.getLogger(__name__)

PROBE_EVENT = "fanout.standby.probe"
PROBE_RESOURCE = "fanout.standby."
CHECK_SECONDS = 0.1
"""How often the tracked runs are looked over for silence (a look is a scan of a dict)."""
PROBE_TIMEOUT_SECONDS = 10.0
"""How long the standby waits for its probe to come back before it gives up this confirmation."""
RETRY_SECONDS = 2.0
"""Pause before a run whose confirmation failed (no probe back, an API error) is looked at again."""
RESUBSCRIBE_SECONDS = 2.0


def standing_by(pid: int | None = None) -> str:
    """How the standby's log line begins each time its event stream is open (tests wait for it)."""
    return f"Standing by (worker process {pid or os.getpid()})"


@dataclass
class Tracked:
    """One attempt of a run the standby has heard from: when it last said it was alive."""

    run_count: int
    heard: float
    busy: bool = False  # a confirmation is under way


class SilenceWatch:
    """When each run last said it was alive, and which have been silent for `silent_after` seconds."""

    def __init__(self, silent_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.silent_after = silent_after
        self._clock = clock
        self._runs: dict[UUID, Tracked] = {}

    def alive(self, run_id: UUID, run_count: int) -> None:
        """The run's attempt `run_count` said it is alive (an event of an older attempt is ignored)."""
        tracked = self._runs.get(run_id)
        if tracked is not None and run_count < tracked.run_count:
            return
        if tracked is None or run_count > tracked.run_count:
            self._runs[run_id] = Tracked(run_count, self._clock())
        else:
            tracked.heard = self._clock()

    def now(self) -> float:
        """A reading of the watch's clock, for `heard_since`."""
        return self._clock()

    def quiet(self, run_id: UUID, run_count: int) -> None:
        """The run's attempt `run_count` left its items on purpose: its silence from now on means nothing."""
        tracked = self._runs.get(run_id)
        if tracked is not None and run_count >= tracked.run_count:
            del self._runs[run_id]

    def forget(self, run_id: UUID) -> None:
        self._runs.pop(run_id, None)

    def heard_since(self, run_id: UUID, moment: float) -> bool:
        """Whether the run spoke (or ended its items) after `moment` (a clock reading)."""
        tracked = self._runs.get(run_id)
        return tracked is None or tracked.heard > moment

    def refresh(self) -> None:
        """Count every run's silence from now (the stream broke: silence while deaf proves nothing)."""
        now = self._clock()
        for tracked in self._runs.values():
            tracked.heard = now

    def silent(self) -> list[tuple[UUID, int]]:
        """The runs silent for the window that no confirmation is looking at, marked as being looked at."""
        now = self._clock()
        found = [
            (run_id, tracked)
            for run_id, tracked in self._runs.items()
            if not tracked.busy and now - tracked.heard >= self.silent_after
        ]
        for _, tracked in found:
            tracked.busy = True
        return [(run_id, tracked.run_count) for run_id, tracked in found]

    def release(self, run_id: UUID, retry_after: float) -> None:
        """A confirmation ended without a verdict: look at the run again `retry_after` seconds from now."""
        tracked = self._runs.get(run_id)
        if tracked is not None:
            tracked.busy = False
            tracked.heard = max(tracked.heard, self._clock() + retry_after - self.silent_after)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs


def _uuid(text: str) -> UUID | None:
    try:
        return UUID(text)
    except ValueError:
        return None


def run_count_of(event: Event) -> int:
    try:
        return int(event.resource.get("prefect.run-count") or 0)
    except ValueError:
        return 0


class Standby:
    """The standby of one warm worker (see the module docstring); `run()` until cancelled."""

    def __init__(
        self,
        client: PrefectClient,
        settings: WarmWorkerSettings,
        pool: str,
        own_runs: Callable[[], Collection[UUID]],
        storage: Callable[[], WritableFileSystem],
        resumed: Callable[[], None] = lambda: None,
        log: logging.Logger | logging.LoggerAdapter[logging.Logger] = logger,
    ) -> None:
        self._client = client
        self._resumed = resumed
        self._log = log
        self._settings = settings
        self._pool = pool
        self._own_runs = own_runs
        self._storage = storage
        self._storage_made: WritableFileSystem | None = None
        self.watch = SilenceWatch(settings.standby_silent_seconds)
        self._probes: dict[UUID, anyio.Event] = {}

    async def run(self) -> None:
        """Listen and look for silence, until cancelled."""
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._listen)
            while True:
                await anyio.sleep(CHECK_SECONDS)
                for run_id, run_count in self.watch.silent():
                    tasks.start_soon(self._confirm, run_id, run_count)

    async def _listen(self) -> None:
        """Hear alive, quiet and probe events; subscribe again if the stream breaks."""
        names = EventNameFilter(name=[ALIVE_EVENT, QUIET_EVENT, PROBE_EVENT])
        resources = EventResourceFilter(id_prefix=[FLOW_RUN_RESOURCE, PROBE_RESOURCE])
        while True:
            try:
                async with get_events_subscriber(filter=EventFilter(event=names, resource=resources)) as events:
                    self._log.info("%s for the runs of pool %r whose alive events stop.", standing_by(), self._pool)
                    async for event in events:
                        self.hear(event)
            except Exception as error:  # noqa: BLE001 - the automations cover the gap; keep listening
                self._log.warning("Standby's event stream broke (%s); subscribing again.", error)
            self.watch.refresh()
            await anyio.sleep(RESUBSCRIBE_SECONDS)

    def hear(self, event: Event) -> None:
        """Take one event into account: an alive or quiet event of a run, or a probe coming back."""
        if event.event == PROBE_EVENT:
            probe = _uuid(event.resource.id[len(PROBE_RESOURCE) :])
            arrived = self._probes.get(probe) if probe is not None else None
            if arrived is not None:
                arrived.set()
            return
        run_id = flow_run_id_of(event)
        if run_id is None:
            return
        if event.event == QUIET_EVENT:
            self.watch.quiet(run_id, run_count_of(event))
        elif datetime.now(UTC) - event.occurred <= timedelta(seconds=self.watch.silent_after):
            self.watch.alive(run_id, run_count_of(event))  # older ones: the stream's replay on subscribing

    async def _confirm(self, run_id: UUID, run_count: int) -> None:
        """Steps 2 to 4 of the module docstring for one silent run; a failure is logged and retried later."""
        noticed = self.watch.now()
        marked = False
        try:
            run = await self._client.read_flow_run(run_id)
            if not self._concerns(run, run_count):
                self.watch.forget(run_id)
                return
            marked = True
            async with anyio.create_task_group() as both:  # the mark need not wait for the probe, nor it for the mark
                both.start_soon(self._mark, run_id, datetime.now(UTC).isoformat())
                current = await self._stream_current()
            if not current:
                self._log.warning("Standby: its probe event did not come back; flow run %s is looked at again.", run_id)
                await self._withdraw(run_id, RETRY_SECONDS)
            elif self.watch.heard_since(run_id, noticed):
                await self._withdraw(run_id, 0.0)
            elif (outcome := await self._resume(run)) is None:  # its process holds its lease, alive on this host
                await self._withdraw(run_id, RETRY_SECONDS)
            else:
                if outcome.message:
                    self._log.warning("Standby: flow run %s %s. %s", run_id, outcome.action, outcome.message)
                self.watch.forget(run_id)
                self._resumed()
        except Exception as error:  # noqa: BLE001 - the next look, or the automations, will do it
            self._log.warning("Standby could not resume or clear silent flow run %s: %r", run_id, error)
            self.watch.release(run_id, RETRY_SECONDS)
            if marked:
                with suppress(Exception):
                    await self._mark(run_id, "")

    async def _withdraw(self, run_id: UUID, retry_after: float) -> None:
        """No verdict, or the run is alive: take the mark back, and look at the run again later."""
        self.watch.release(run_id, retry_after)
        await self._mark(run_id, "")

    def _concerns(self, run: FlowRun, run_count: int) -> bool:
        """Whether the silent attempt is still the run's, Running, in this pool, and not this worker's own."""
        return (
            run.state is not None
            and run.state.type == StateType.RUNNING
            and run.run_count == run_count
            and run.work_pool_name == self._pool
            and run.id not in self._own_runs()
        )

    async def _mark(self, run_id: UUID, noticed: str) -> None:
        """Set the run's `fanout.silent` label (empty: it spoke again)."""
        await self._client.update_flow_run_labels(run_id, {SILENT_LABEL: noticed})

    async def _stream_current(self) -> bool:
        """Post a probe event and wait until it comes back on this standby's stream."""
        probe = uuid4()
        arrived = self._probes[probe] = anyio.Event()
        try:
            event = {
                "id": str(probe),
                "occurred": datetime.now(UTC).isoformat(),
                "event": PROBE_EVENT,
                "resource": {"prefect.resource.id": f"{PROBE_RESOURCE}{probe}"},
            }
            (await self._client.request("POST", "/events", json=[event])).raise_for_status()
            with anyio.move_on_after(PROBE_TIMEOUT_SECONDS):
                await arrived.wait()
            return arrived.is_set()
        finally:
            self._probes.pop(probe, None)

    async def _resume(self, run: FlowRun) -> Reconciled | None:
        silence = self._settings.standby_silent_seconds
        stuck = f"Flow run fell silent (no alive event for {silence:g}s); a standby worker found it dead."
        if self._storage_made is None:
            self._storage_made = await anyio.to_thread.run_sync(self._storage)
        return await resume_orphan(self._client, run, self._storage_made, self._settings, stuck)

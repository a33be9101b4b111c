"""Flow runs reaching a final state, as Prefect's event stream announces them, for status requests that
wait (`?wait=`).

One subscription per webhook process serves every waiting request: a request reads the status, and if
the run is not finished it waits for its run's final-state event (or the recheck interval, should the
stream be down or the event be missed), then reads again. A client holding one such request learns of
the end as soon as the server records it, instead of at its next poll. Other state changes wake nobody:
a waiting request answers only a finished run, and a read at each of them would only load the server
while the run is at its busiest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from uuid import UUID

from prefect.events import Event

from fanout.core.prefect_adapter import FLOW_RUN_RESOURCE, flow_run_id_of

logger = logging.getLogger(__name__)

STATE_EVENT_PREFIX = "prefect.flow-run."
NOT_STATE_EVENTS = ["prefect.flow-run.heartbeat"]
FINAL_STATE_TYPES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
RESUBSCRIBE_SECONDS = 1.0
QUEUED_POLL_SECONDS = 0.05
"""How often a request waiting on a start still in the queue (no flow run yet) looks again."""
REMEMBERED_SECONDS = 60.0
"""How long a run's end is remembered for a request that read the run just before the event came."""

Subscribe = Callable[[], AbstractAsyncContextManager[AsyncIterator[Event]]]


class StateChanges:
    """When each flow run heard of last reached a final state, and the requests waiting on one.

    `recheck_seconds` bounds each wait, so a missed event (the stream reconnecting, a server restart)
    delays an answer by at most that much.
    """

    def __init__(self, recheck_seconds: float = 1.0) -> None:
        self.recheck_seconds = recheck_seconds
        self._ended_at: dict[UUID, float] = {}
        self._waiters: dict[UUID, set[asyncio.Event]] = {}

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def ended(self, flow_run_id: UUID) -> None:
        """`flow_run_id` reached a final state: wake the requests waiting on it."""
        now = self.now()
        self._ended_at[flow_run_id] = now
        for waiter in self._waiters.get(flow_run_id, ()):
            waiter.set()
        self._forget_older_than(now - REMEMBERED_SECONDS)

    def ended_since(self, flow_run_id: UUID, since: float) -> bool:
        """Whether `flow_run_id` reached a final state at or after `since` (monotonic)."""
        return self._ended_at.get(flow_run_id, float("-inf")) >= since

    async def wait(self, flow_run_id: UUID | None, since: float, timeout: float) -> bool:
        """Wait until `flow_run_id` reaches a final state after `since` (monotonic), at most `timeout` seconds
        and the recheck interval; True when it did. With no run yet (a start still queued) it only sleeps."""
        limit = max(0.0, min(timeout, self.recheck_seconds))
        if flow_run_id is None:
            await asyncio.sleep(min(limit, QUEUED_POLL_SECONDS))
            return False
        if self.ended_since(flow_run_id, since):
            return True
        waiter = asyncio.Event()
        self._waiters.setdefault(flow_run_id, set()).add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), limit)
        finally:
            waiting = self._waiters.get(flow_run_id)
            if waiting is not None:
                waiting.discard(waiter)
                if not waiting:
                    del self._waiters[flow_run_id]
        return self.ended_since(flow_run_id, since)

    async def listen(self, subscribe: Subscribe) -> None:
        """Hear flow-run state events until cancelled, taking note of final ones; subscribe again whenever
        the stream breaks."""
        warned = False
        while True:
            try:
                async with subscribe() as events:
                    warned = False
                    async for event in events:
                        run_id = flow_run_id_of(event)
                        if run_id is not None and _final(event):
                            self.ended(run_id)
            except Exception as error:  # noqa: BLE001 - waits fall back to the recheck interval meanwhile
                log = logger.debug if warned else logger.warning  # once per outage, not every second of it
                log("flow-run state event stream broke (%s); subscribing again", error)
                warned = True
            finally:
                await asyncio.sleep(RESUBSCRIBE_SECONDS)

    def _forget_older_than(self, moment: float) -> None:
        if len(self._ended_at) < 1024:
            return
        for run_id in [run for run, at in self._ended_at.items() if at < moment]:
            del self._ended_at[run_id]


def prefect_subscription(api_url: str) -> Subscribe:
    """Subscribe to the flow-run state events of the Prefect API at `api_url`, from now on."""
    from prefect.events.clients import PrefectEventSubscriber
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    def subscribe() -> AbstractAsyncContextManager[AsyncIterator[Event]]:
        event_filter = EventFilter(
            occurred=EventOccurredFilter(since=datetime.now(UTC)),
            event=EventNameFilter(prefix=[STATE_EVENT_PREFIX], exclude_name=NOT_STATE_EVENTS),
            resource=EventResourceFilter(id_prefix=[FLOW_RUN_RESOURCE]),
        )
        return PrefectEventSubscriber(api_url=api_url, filter=event_filter, reconnection_attempts=0)

    return subscribe


def _final(event: Event) -> bool:
    state = event.payload.get("validated_state")
    return isinstance(state, dict) and state.get("type") in FINAL_STATE_TYPES

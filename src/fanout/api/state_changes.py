"""Flow-run state changes as Prefect's event stream announces them, for status requests that wait (`?wait=`).

One subscription per webhook process serves every waiting request: a request reads the status, and if
the run is not finished it waits for its run's next state event (or the recheck interval, should the
stream be down or the event be missed), then reads again. A client holding one such request learns of
the final state as soon as the server records it, instead of at its next poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from uuid import UUID

from prefect.events import Event

logger = logging.getLogger(__name__)

FLOW_RUN_RESOURCE = "prefect.flow-run."
STATE_EVENT_PREFIX = "prefect.flow-run."
NOT_STATE_EVENTS = ["prefect.flow-run.heartbeat"]
FINAL_STATE_TYPES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})
RESUBSCRIBE_SECONDS = 1.0
QUEUED_POLL_SECONDS = 0.05
"""How often a request waiting on a start still in the queue (no flow run yet) looks again."""
REMEMBERED_SECONDS = 60.0
"""How long a state change is remembered for a request that read the run just before the event came."""


class Heard(enum.Enum):
    """What a waiting request heard of its run: some state change, or one into a final state."""

    CHANGED = "changed"
    FINAL = "final"


Subscribe = Callable[[], AbstractAsyncContextManager[AsyncIterator[Event]]]


class StateChanges:
    """The latest state-change time of each flow run heard of, and the requests waiting on one.

    `recheck_seconds` bounds each wait, so a missed event (the stream reconnecting, a server restart)
    delays an answer by at most that much.
    """

    def __init__(self, recheck_seconds: float = 1.0) -> None:
        self.recheck_seconds = recheck_seconds
        self._changed_at: dict[UUID, tuple[float, bool]] = {}
        self._waiters: dict[UUID, set[asyncio.Event]] = {}
        self.listening = False

    @staticmethod
    def now() -> float:
        return time.monotonic()

    def heard(self, flow_run_id: UUID, final: bool = False) -> None:
        """A state change of `flow_run_id` (`final`: into a final state): wake the requests waiting on it."""
        now = self.now()
        self._changed_at[flow_run_id] = (now, final)
        for waiter in self._waiters.get(flow_run_id, ()):
            waiter.set()
        self._forget_older_than(now - REMEMBERED_SECONDS)

    def heard_since(self, flow_run_id: UUID, since: float) -> Heard | None:
        """What was heard of `flow_run_id` at or after `since` (monotonic), if anything."""
        at, final = self._changed_at.get(flow_run_id, (float("-inf"), False))
        if at < since:
            return None
        return Heard.FINAL if final else Heard.CHANGED

    async def wait(self, flow_run_id: UUID | None, since: float, timeout: float) -> Heard | None:
        """Wait until `flow_run_id` changes state after `since` (monotonic), at most `timeout` seconds and the
        recheck interval; what was heard, if anything. With no run yet (a start still queued) it only sleeps."""
        limit = max(0.0, min(timeout, self.recheck_seconds))
        if flow_run_id is None:
            await asyncio.sleep(min(limit, QUEUED_POLL_SECONDS))
            return None
        heard = self.heard_since(flow_run_id, since)
        if heard is not None:
            return heard
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
        return self.heard_since(flow_run_id, since)

    async def listen(self, subscribe: Subscribe) -> None:
        """Hear flow-run state events until cancelled; subscribe again whenever the stream breaks."""
        warned = False
        while True:
            try:
                async with subscribe() as events:
                    self.listening = True
                    warned = False
                    async for event in events:
                        run_id = _flow_run_id(event)
                        if run_id is not None:
                            self.heard(run_id, final=_final(event))
            except Exception as error:  # noqa: BLE001 - waits fall back to the recheck interval meanwhile
                log = logger.debug if warned else logger.warning  # once per outage, not every second of it
                log("flow-run state event stream broke (%s); subscribing again", error)
                warned = True
            finally:
                self.listening = False
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    def _forget_older_than(self, moment: float) -> None:
        if len(self._changed_at) < 1024:
            return
        for run_id in [run for run, (at, _) in self._changed_at.items() if at < moment]:
            del self._changed_at[run_id]


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


def _flow_run_id(event: Event) -> UUID | None:
    resource = event.resource.id
    if not resource.startswith(FLOW_RUN_RESOURCE):
        return None
    try:
        return UUID(resource[len(FLOW_RUN_RESOURCE) :])
    except ValueError:
        return None


def _final(event: Event) -> bool:
    state = event.payload.get("validated_state")
    return isinstance(state, dict) and state.get("type") in FINAL_STATE_TYPES

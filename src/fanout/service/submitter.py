"""Create the flow runs of the starts the webhook accepted, a few at a time, until none is left.

It runs in the webhook process and is woken by each accepted start. A create that timed out or met a
busy server stays queued and is sent again with the same Prefect idempotency key, so it makes one run
however often it is sent; one Prefect refuses for good marks the start `failed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import httpx
from prefect.exceptions import ObjectNotFound

from fanout.inputs.request import FanoutRequest
from fanout.service.runs import Runs
from fanout.service.start_queue import QueuedStart, StartQueue
from fanout.service.webhook_errors import PrefectUnavailable

logger = logging.getLogger(__name__)

QUEUE_KEY_PREFIX = "fanout-webhook:"
MAX_PAUSE_SECONDS = 5.0


def prefect_key(start: QueuedStart) -> str:
    """Prefect's idempotency key of the run a queued start creates."""
    return f"{QUEUE_KEY_PREFIX}{start.key}"


class Submitter:
    """Sends queued starts to Prefect, `concurrency` creates at a time."""

    def __init__(
        self,
        queue: StartQueue,
        runs: Runs,
        concurrency: int,
        pause_seconds: float = 0.5,
        default_deployment: str | None = None,
    ) -> None:
        self.queue = queue
        self.runs = runs
        self.default_deployment = default_deployment
        """The deployment a start that names none runs (`flow/deployment`), to tell a missing one from a busy Prefect."""
        self.concurrency = concurrency
        self.pause_seconds = pause_seconds
        self._wake = asyncio.Event()
        self._sending: dict[str, asyncio.Event] = {}

    def wake(self) -> None:
        """A start was queued: send it now."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Drain the queue whenever woken, and after a pause while starts wait on a busy Prefect."""
        pause = self.pause_seconds
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=pause)
            self._wake.clear()
            stuck = not await self.drain()
            pause = min(pause * 2, MAX_PAUSE_SECONDS) if stuck else self.pause_seconds

    async def drain(self) -> bool:
        """Send every queued start; False when Prefect was unavailable and some are left for later."""
        while batch := self.queue.queued(self.concurrency):
            sent = await asyncio.gather(*(self._submit(start) for start in batch))
            if not all(sent):
                return False
        return True

    async def sent(self, key: str) -> None:
        """Return once no create of start `key` is on its way to Prefect (a run it makes exists by then)."""
        sending = self._sending.get(key)
        if sending is not None:
            await sending.wait()

    async def _submit(self, start: QueuedStart) -> bool:
        """Create the start's run; False when it must wait for Prefect and be sent again."""
        sending = self._sending[start.key] = asyncio.Event()
        try:
            return await self._create(start)
        finally:
            del self._sending[start.key]
            sending.set()

    async def _create(self, start: QueuedStart) -> bool:
        try:
            request = FanoutRequest.model_validate_json(start.request)
            run = await self.runs.start(request, start.digest, prefect_key(start), start.key, start.deployment)
        except ObjectNotFound as error:
            name = start.deployment or self.default_deployment
            if name is not None and await self._missing(name):
                self.queue.finish(start.key, "failed", error=f"no deployment {name!r} on the Prefect server")
                return True
            logger.warning("start %s waits for Prefect: %s", start.key, error)
            return False
        except PrefectUnavailable as error:
            logger.warning("start %s waits for Prefect: %s", start.key, error)
            return False
        except httpx.HTTPStatusError as error:
            logger.error("Prefect refused start %s: %s", start.key, error)
            self.queue.finish(start.key, "failed", error=f"Prefect refused the run: {error.response.text[:500]}")
            return True
        if not self.queue.finish(start.key, "submitted", flow_run_id=str(run.flow_run_id)):
            await self.runs.terminate(run)  # terminated while its create was on the way
        return True

    async def _missing(self, deployment: str) -> bool:
        """True when Prefect answers that it has no such deployment (a start of it fails for good: in a
        project whose prefect.yaml has no seed, say); False when that cannot be told now."""
        try:
            return await self.runs.deployment_env(deployment) is None
        except PrefectUnavailable:
            return False

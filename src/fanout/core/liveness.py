"""fanout's own liveness signal: a deployment run says it is alive every few seconds.

Prefect's flow-run heartbeat is too coarse to resume a dead run quickly, so while a deployment run's
flow body runs, a daemon thread emits `fanout.flow-run.alive` events, and an automation
(src/fanout/service/automations.py) puts a run that falls silent back to AwaitingRetry, where it
resumes from its checkpoints. When the block ends (a stage's items are done, and the flow goes on with
its own code), a `fanout.flow-run.quiet` event says that the silence that follows is intended: a
standby warm worker (src/fanout/worker/standby.py) only takes silence after an alive event for a death.
See docs/design/crash-resume.md.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from uuid import UUID

logger = logging.getLogger(__name__)

ALIVE_EVENT = "fanout.flow-run.alive"
QUIET_EVENT = "fanout.flow-run.quiet"
THREAD_NAME = "fanout-liveness"


@dataclass(frozen=True)
class Subject:
    """The deployment run an alive event is about."""

    flow_run_id: UUID
    deployment_id: UUID
    run_count: int

    def resource(self) -> dict[str, str]:
        return {"prefect.resource.id": f"prefect.flow-run.{self.flow_run_id}", "prefect.run-count": str(self.run_count)}

    def related(self) -> list[dict[str, str]]:
        return [
            {"prefect.resource.id": f"prefect.deployment.{self.deployment_id}", "prefect.resource.role": "deployment"}
        ]


def current_subject() -> Subject | None:
    """This process's deployment run, or None outside one."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context else None
    if run is None or run.deployment_id is None:
        return None
    return Subject(run.id, run.deployment_id, run.run_count)


def emit_alive(subject: Subject, event: str = ALIVE_EVENT) -> None:
    """One `fanout.flow-run.alive` (or `event`) event about `subject` (queued, not awaited)."""
    from prefect.events import emit_event

    emit_event(event, resource=subject.resource(), related=subject.related())


@contextmanager
def keeping_alive(interval: float) -> Iterator[Subject | None]:
    """Emit an alive event now and every `interval` seconds until the block ends, then a quiet event
    (deployment runs only)."""
    subject = current_subject()
    if subject is None:
        yield None
        return
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                emit_alive(subject)
            except Exception as error:  # noqa: BLE001 - a lost beat must never fail the run
                logger.debug("could not emit %s: %s", ALIVE_EVENT, error)
            if stop.wait(interval):
                return

    context = contextvars.copy_context()  # the run's settings: the events client finds its API there
    thread = threading.Thread(target=context.run, args=(beat,), name=THREAD_NAME, daemon=True)
    thread.start()
    try:
        yield subject
    finally:
        stop.set()
        thread.join(interval)  # its last alive event is queued before the quiet one
        try:
            emit_alive(subject, QUIET_EVENT)
        except Exception as error:  # noqa: BLE001 - a lost quiet event leaves the run to the automations
            logger.debug("could not emit %s: %s", QUIET_EVENT, error)

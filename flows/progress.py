"""Live progress of a run, published to Prefect while the run goes.

Task-run records reach the API long after the work (Prefect's event pipeline
lags and drops events at scale), so progress is counted here, in the flow's
process, and published at most once per interval, only when it changed:

- flow-run labels `fanout.total`, `fanout.completed`, `fanout.failed`, which the
  webhook's status URL reads as `customStatus` from the flow run it fetches anyway;
- a Prefect progress artifact ("120 of 200 items done, 1 failed") for the UI.

A failing publish is logged and retried on the next tick; it never fails the run.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

logger = logging.getLogger(__name__)

LABEL_TOTAL = "fanout.total"
LABEL_COMPLETED = "fanout.completed"
LABEL_FAILED = "fanout.failed"
ARTIFACT_KEY = "fanout-progress"


@dataclass(frozen=True)
class Progress:
    """A snapshot of how far a run is."""

    total: int
    completed: int = 0
    failed: int = 0

    @property
    def percent(self) -> float:
        """Finished items (completed or failed) as a percentage of the total."""
        return 100.0 if self.total == 0 else 100.0 * (self.completed + self.failed) / self.total

    def describe(self) -> str:
        """The progress artifact's description: "120 of 200 items done, 1 failed"."""
        return f"{self.completed} of {self.total} items done, {self.failed} failed"

    def labels(self) -> dict[str, int]:
        """The flow-run labels that carry this snapshot."""
        return {LABEL_TOTAL: self.total, LABEL_COMPLETED: self.completed, LABEL_FAILED: self.failed}


def progress_from_labels(labels: dict[str, Any] | None) -> Progress | None:
    """The progress a flow run's labels carry, or None when it has not published any."""
    if not labels or LABEL_TOTAL not in labels:
        return None
    try:
        return Progress(
            total=int(labels[LABEL_TOTAL]),
            completed=int(labels.get(LABEL_COMPLETED, 0)),
            failed=int(labels.get(LABEL_FAILED, 0)),
        )
    except (TypeError, ValueError):
        return None


Publish = Callable[[Progress], None]


class ProgressReporter:
    """Counts finished items (thread-safe) and publishes them from a daemon thread.

    Use as a context manager inside the flow: it publishes once on entry (so the
    total shows at once), whenever the count changed at most every `interval`
    seconds, and a final flush on exit.
    """

    def __init__(self, total: int, interval: float = 1.0, publish: Publish | None = None) -> None:
        self._lock = threading.Lock()
        self._current = Progress(total=total)
        self._published: Progress | None = None
        self._interval = interval
        self._publish = publish or PrefectPublisher()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def current(self) -> Progress:
        """The latest count."""
        with self._lock:
            return self._current

    def advance(self, completed: int = 0, failed: int = 0) -> None:
        """Record `completed` more items done and `failed` more items failed."""
        with self._lock:
            now = self._current
            self._current = Progress(now.total, now.completed + completed, now.failed + failed)

    def count_future(self, future: Any) -> None:
        """A Prefect future's done callback: one item completed or failed."""
        try:
            ok = future.state.is_completed()
        except Exception:  # noqa: BLE001 - an unreadable state counts as a failure
            ok = False
        self.advance(completed=int(ok), failed=int(not ok))

    def settle(self, outcomes: Iterable[Any]) -> None:
        """Set the exact final count from the run's outcomes (objects with `.ok`)."""
        done = list(outcomes)
        completed = sum(1 for outcome in done if outcome.ok)
        with self._lock:
            self._current = Progress(self._current.total, completed, len(done) - completed)

    def __enter__(self) -> ProgressReporter:
        self.flush()
        context = contextvars.copy_context()  # the flow-run context, so artifacts attach to this run
        self._thread = threading.Thread(target=context.run, args=(self._loop,), name="fanout-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.flush()

    def flush(self) -> None:
        """Publish the current count if it differs from the last published one."""
        snapshot = self.current
        if snapshot == self._published:
            return
        try:
            self._publish(snapshot)
        except Exception as error:  # noqa: BLE001 - progress must never fail the run
            logger.warning("could not publish progress (%s); will try again", error)
            return
        self._published = snapshot

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()


_active: dict[str, ProgressReporter] = {}
_active_lock = threading.Lock()


@contextmanager
def reporting(instance_id: str, reporter: ProgressReporter) -> Iterator[ProgressReporter]:
    """Make `reporter` the one `report_item` finds for `instance_id` in this process."""
    with _active_lock:
        _active[instance_id] = reporter
    try:
        yield reporter
    finally:
        with _active_lock:
            if _active.get(instance_id) is reporter:
                del _active[instance_id]


def report_item(instance_id: str, ok: bool) -> None:
    """Count one finished item of `instance_id`, if its reporter lives in this process.

    Batch tasks call this per item; in another process (a Dask worker) there is
    no reporter and the flow's final count is what gets published.
    """
    with _active_lock:
        reporter = _active.get(instance_id)
    if reporter is not None:
        reporter.advance(completed=int(ok), failed=int(not ok))


class PrefectPublisher:
    """Writes a snapshot to the current flow run's labels and its progress artifact."""

    def __init__(self) -> None:
        self._artifact_id: UUID | None = None
        self._flow_run_id: UUID | None = None

    def __call__(self, progress: Progress) -> None:
        from prefect.artifacts import create_progress_artifact, update_progress_artifact
        from prefect.client.orchestration import get_client
        from prefect.runtime import flow_run

        if self._flow_run_id is None:
            run_id = flow_run.get_id()
            if run_id is None:
                return  # not inside a flow run: nothing to label
            self._flow_run_id = UUID(str(run_id))
        with get_client(sync_client=True) as client:
            client.update_flow_run_labels(self._flow_run_id, progress.labels())
        if self._artifact_id is None:
            self._artifact_id = create_progress_artifact(  # type: ignore[assignment]
                progress.percent, key=ARTIFACT_KEY, description=progress.describe()
            )
        else:
            update_progress_artifact(self._artifact_id, progress.percent, description=progress.describe())

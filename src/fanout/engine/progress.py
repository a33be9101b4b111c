"""Live progress of a run, published to Prefect while the run goes.

Task-run records reach the API late and some are dropped at scale, so progress is counted in the
flow's process and published as flow-run labels (the status URL's `customStatus`) and a progress
artifact. A failing publish is logged and retried on the next tick; it never fails the run.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self
from uuid import UUID

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.context import SettingsContext

logger = logging.getLogger(__name__)

LABEL_TOTAL = "fanout.total"
LABEL_COMPLETED = "fanout.completed"
LABEL_FAILED = "fanout.failed"
ARTIFACT_KEY = "fanout-progress"
FINAL_ATTEMPTS = 20
THREAD_NAME = "fanout-progress"
PUBLISH_TIMEOUT_SECONDS = 2.0
QUIET_SECONDS = 1.0
"""A run not announced first publishes its progress after this long."""


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

    def labels(self) -> dict[str, bool | int | float | str]:
        """The flow-run labels that carry this snapshot."""
        return {LABEL_TOTAL: self.total, LABEL_COMPLETED: self.completed, LABEL_FAILED: self.failed}


def refused(error: Exception | None) -> bool:
    """The error is a refused connection: no server listens at the address."""
    import httpx

    return isinstance(error, ConnectionRefusedError) or (
        isinstance(error, httpx.ConnectError) and "refused" in str(error).lower()
    )


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
    """Counts finished items (thread-safe) and publishes them from a background thread.

    Use as a context manager inside the flow. The thread publishes whenever the
    count changed, at most every `interval` seconds, and a final count after the
    run's final state. With `announce` it also publishes on entry, for a run whose
    item count the status URL cannot read from its request (a source); otherwise it
    first publishes after `quiet` seconds: a run that ends sooner publishes nothing,
    since its status is exact without, and a progress bar that would show 100% of a
    run already Completed costs the server two label updates and an artifact's writes.
    The thread is not a daemon, so the process ends only after the final count is
    sent (up to `FINAL_ATTEMPTS` tries).
    """

    def __init__(
        self,
        total: int,
        interval: float = 0.5,
        publish: Publish | None = None,
        announce: bool = True,
        quiet: float = QUIET_SECONDS,
    ) -> None:
        self._announce = announce
        self._quiet = max(interval, quiet)
        self._lock = threading.Lock()
        self._current = Progress(total=total)
        self._published: Progress | None = None
        self._interval = interval
        self._last_error: Exception | None = None
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

    def set_final_count(self, outcomes: Iterable[Any]) -> None:
        """Set the exact final count from the run's outcomes (objects with `.ok`)."""
        done = list(outcomes)
        completed = sum(1 for outcome in done if outcome.ok)
        self.set_final(completed, len(done) - completed)

    def set_final(self, completed: int, failed: int) -> None:
        """Set the exact final count: `completed` items done and `failed` items failed."""
        with self._lock:
            self._current = Progress(self._current.total, completed, failed)

    def __enter__(self) -> Self:
        context = contextvars.copy_context()  # the flow-run context, so artifacts attach to this run
        self._thread = threading.Thread(target=context.run, args=(self._loop,), name=THREAD_NAME)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, error: BaseException | None, *exc: object) -> None:
        """The last count goes after the run's final state; at once if the block stopped on an exception."""
        from fanout.core.wrap_up import after_final_state

        after_final_state(self._stop.set, stopped=error)

    def wait_published(self, timeout: float | None = None) -> None:
        """Block until the final flush after exit is done, or `timeout` seconds have passed."""
        if self._thread is not None:
            self._thread.join(timeout)

    def flush(self) -> bool:
        """Publish the current count if it differs from the last published one; False if that failed."""
        snapshot = self.current
        if snapshot == self._published:
            return True
        try:
            self._publish(snapshot)
        except Exception as error:  # noqa: BLE001 - progress must never fail the run
            # Expected now and then (SQLite answers a labels update 503 while it writes the
            # run's events); the next tick retries, so only a final count that never lands warns.
            logger.debug("could not publish progress (%s); will try again", error)
            self._last_error = error
            return False
        self._published = snapshot
        return True

    def _loop(self) -> None:
        published = self._announce
        if self._announce:
            self.flush()
        elif not self._stop.wait(self._quiet):
            self.flush()
            published = True
        while not self._stop.wait(self._interval):
            self.flush()
            published = True
        if published:
            self._final_flush()
        close = getattr(self._publish, "close", None)
        if close is not None:
            close()

    def _final_flush(self) -> None:
        """The last count, tried `FINAL_ATTEMPTS` times: what the UI shows of a run that showed progress.
        A refused connection ends the tries at once: nothing listens at the API (a test's temporary server
        already stopped), and each try would hold the process for the client's connect retries."""
        for _ in range(FINAL_ATTEMPTS):
            if self.flush():
                return
            if refused(self._last_error):
                logger.info("no API to publish the final progress %s to: %s", self.current, self._last_error)
                return
            time.sleep(self._interval / 4)
        logger.warning("could not publish the final progress %s: %s", self.current, self._last_error)


_reporter: contextvars.ContextVar[ProgressReporter | None] = contextvars.ContextVar("fanout_progress", default=None)


@contextmanager
def reporting(reporter: ProgressReporter) -> Iterator[ProgressReporter]:
    """Make `reporter` the one an `ItemTally` finds in this context and in task runs submitted from it.

    Prefect's thread runner runs each task run in a copy of the submitting
    context, so items running on threads of this run count towards this run's
    reporter, and another run in the same process has its own. A Dask worker
    has none: the flow counts those items when their task run returns.
    """
    token = _reporter.set(reporter)
    try:
        yield reporter
    finally:
        _reporter.reset(token)


class ItemTally:
    """One batch's count of finished items, handed to its run's reporter at most every `interval`.

    Counting locally keeps a large run's threads off the reporter's lock, and
    handing over every `interval` keeps the published count fresh. In another
    process (a Dask worker) there is no reporter: the flow counts the batch when it
    returns. Use as a context manager: the rest is handed over on exit.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self._reporter = _reporter.get()
        self._interval = interval
        self._completed = 0
        self._failed = 0
        self._handed_at = time.monotonic()

    def count(self, ok: bool) -> None:
        """One more item finished (`ok`) or failed."""
        if self._reporter is None:
            return
        if ok:
            self._completed += 1
        else:
            self._failed += 1
        if time.monotonic() - self._handed_at >= self._interval:
            self.hand_over()

    def hand_over(self) -> None:
        """Add what was counted since the last hand-over to the reporter."""
        self._handed_at = time.monotonic()
        if self._reporter is not None and (self._completed or self._failed):
            self._reporter.advance(completed=self._completed, failed=self._failed)
            self._completed = self._failed = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.hand_over()


class PrefectPublisher:
    """Writes a snapshot to the current flow run's labels and its progress artifact.

    It keeps one synchronous Prefect client for the whole run and calls it
    directly: opening a client per publish, or going through Prefect's
    async-dispatching artifact helpers, made one publish cost up to seconds
    while a large run kept the flow process busy.
    """

    def __init__(self) -> None:
        self._artifact_id: UUID | None = None
        self._flow_run_id: UUID | None = None
        self._client: SyncPrefectClient | None = None
        self._no_retries: SettingsContext | None = None

    def __call__(self, progress: Progress) -> None:
        client = self._connected()
        if client is None or self._no_retries is None:
            return  # not inside a flow run: nothing to label
        with self._no_retries:
            self._send(client, progress)

    def _send(self, client: SyncPrefectClient, progress: Progress) -> None:
        from fanout.core.prefect_adapter import create_progress_artifact, update_progress_artifact

        assert self._flow_run_id is not None
        client.update_flow_run_labels(self._flow_run_id, progress.labels())
        if self._artifact_id is None:
            self._artifact_id = create_progress_artifact(
                client,
                key=ARTIFACT_KEY,
                flow_run_id=self._flow_run_id,
                percent=progress.percent,
                description=progress.describe(),
            )
        else:
            update_progress_artifact(
                client, self._artifact_id, percent=progress.percent, description=progress.describe()
            )

    def _connected(self) -> SyncPrefectClient | None:
        """The client, opened on first use inside a flow run, with its no-retry settings."""
        if self._client is None:
            from prefect.client.orchestration import get_client
            from prefect.runtime import flow_run

            from fanout.core.prefect_adapter import api_tls_context, client_retries_off

            run_id = flow_run.get_id()
            if run_id is None:
                return None
            self._flow_run_id = UUID(str(run_id))
            # No client-side retries: on SQLite the labels update answers 503 while the run's
            # events are being written, and the client's retry sleeps 2 s; the reporter's next
            # tick (or its final attempts) is the retry, with the newest count.
            self._no_retries = client_retries_off()
            settings = {"timeout": PUBLISH_TIMEOUT_SECONDS, "verify": api_tls_context()}
            self._client = get_client(sync_client=True, httpx_settings=settings)
            self._client.__enter__()
        return self._client

    def close(self) -> None:
        """Close the client; the reporter calls this after its final flush."""
        if self._client is not None:
            self._client.__exit__(None, None, None)
            self._client = None

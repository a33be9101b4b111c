"""Live progress: counted thread-safely, published only when changed, never failing the run."""

from __future__ import annotations

import contextvars
import logging
import threading
import time

import pytest

from fanout.core.outcome import ItemOutcome
from fanout.engine.progress import (
    THREAD_NAME,
    ItemTally,
    Progress,
    ProgressReporter,
    progress_from_labels,
    reporting,
)
from fanout.localstack.polling import wait_for


class Recorder:
    def __init__(self, fail: bool = False, gate: threading.Event | None = None) -> None:
        self.published: list[Progress] = []
        self.fail = fail
        self.gate = gate
        self.blocked = threading.Event()
        self.first = threading.Event()
        self.attempts = 0

    def __call__(self, progress: Progress) -> None:
        self.attempts += 1
        if self.fail:
            raise ConnectionError("API down")
        if self.gate is not None and self.published:  # the first publish (on entry) goes through
            self.blocked.set()
            self.gate.wait()
        self.published.append(progress)
        self.first.set()


def test_advance_is_thread_safe() -> None:
    """Eight threads advancing 1,000 times each lose no count."""
    reporter = ProgressReporter(total=8000, publish=Recorder())
    threads = [threading.Thread(target=lambda: [reporter.advance(completed=1) for _ in range(1000)]) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert reporter.current == Progress(total=8000, completed=8000)


def test_publishes_on_entry_and_a_final_flush_on_exit() -> None:
    """The total shows at once, without waiting an interval, and the last count when the run ends."""
    recorder = Recorder()
    with ProgressReporter(total=3, interval=60, publish=recorder) as reporter:
        assert recorder.first.wait(5)
        reporter.advance(completed=2, failed=1)
    reporter.wait_published()
    assert recorder.published == [Progress(3), Progress(3, 2, 1)]


def test_a_slow_api_does_not_hold_the_run_but_still_gets_the_final_count() -> None:
    """Exit does not wait for a slow publish; the final count lands afterwards all the same."""
    api = threading.Event()
    recorder = Recorder(gate=api)
    with ProgressReporter(total=3, interval=0.01, publish=recorder) as reporter:
        assert recorder.first.wait(5)
        reporter.advance(completed=1)
        recorder.blocked.wait(5)  # the thread is now stuck in a publish
        reporter.advance(completed=2)
    assert recorder.published == [Progress(3)]  # the run went on while the API was stuck
    api.set()
    reporter.wait_published(5)
    assert recorder.published[-1] == Progress(3, 3, 0)


def test_publishes_periodically_only_when_changed() -> None:
    """The publisher thread publishes a change within an interval and nothing while idle."""
    recorder = Recorder()
    with ProgressReporter(total=5, interval=0.02, publish=recorder) as reporter:
        assert recorder.first.wait(5)
        reporter.advance(completed=1)
        wait_for(lambda: len(recorder.published) > 1, 5, "the change to be published", interval=0.01)
        time.sleep(0.1)  # five idle intervals
        assert recorder.published == [Progress(5), Progress(5, 1, 0)]
    assert recorder.published == [Progress(5), Progress(5, 1, 0)]


def test_a_failing_publish_does_not_fail_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """A publish that keeps failing is retried and, in the end, logged as a warning; the run goes on."""
    recorder = Recorder(fail=True)
    with caplog.at_level(logging.WARNING, logger="fanout.engine.progress"):
        with ProgressReporter(total=2, interval=0.01, publish=recorder) as reporter:
            reporter.advance(completed=2)
        reporter.wait_published(30)
    assert recorder.attempts > 1  # the publisher thread lived on after the first error
    assert "could not publish the final progress" in caplog.text


def test_settle_sets_the_exact_final_count() -> None:
    """The final count comes from the outcomes, whatever was counted on the way."""
    reporter = ProgressReporter(total=3, publish=Recorder())
    reporter.advance(completed=5)
    reporter.set_final_count(
        [ItemOutcome(item="a", value=1), ItemOutcome(item="b", value=2), ItemOutcome(item="c", error="x")]
    )
    assert reporter.current == Progress(3, 2, 1)


def test_a_tally_reaches_the_reporter_of_its_own_run() -> None:
    """Task runs count items through the reporter of the run whose context they run in, not another's."""
    reporter = ProgressReporter(total=2, publish=Recorder())
    other = ProgressReporter(total=1, publish=Recorder())
    with reporting(reporter):
        with ItemTally() as tally:
            tally.count(ok=True)
            tally.count(ok=False)
        with reporting(other), ItemTally() as elsewhere:
            elsewhere.count(ok=True)
    with ItemTally() as late:
        late.count(ok=True)
    assert (reporter.current, other.current) == (Progress(2, 1, 1), Progress(1, 1, 0))


def test_a_thread_started_in_a_copy_of_the_run_context_counts_for_that_run() -> None:
    """A task thread runs in a copy of the submitting context (as Prefect's thread runner does) and finds its run."""
    reporter = ProgressReporter(total=1, publish=Recorder())

    def item() -> None:
        with ItemTally() as tally:
            tally.count(ok=True)

    with reporting(reporter):
        context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(item,))
    thread.start()
    thread.join()
    assert reporter.current == Progress(1, 1, 0)


def test_a_tally_hands_over_while_the_batch_runs() -> None:
    """Counts reach the reporter during a batch, not only when it ends."""
    reporter = ProgressReporter(total=3, publish=Recorder())
    with reporting(reporter), ItemTally(interval=0) as tally:
        tally.count(ok=True)
        assert reporter.current == Progress(3, 1, 0)


def test_description_and_labels() -> None:
    """The artifact text and the labels the status URL reads."""
    progress = Progress(200, 120, 1)
    assert progress.describe() == "120 of 200 items done, 1 failed"
    assert progress_from_labels({**progress.labels(), "other": "x"}) == progress
    assert progress_from_labels({"fanout.total": "nope"}) is None
    assert progress_from_labels(None) is None


def test_a_run_shorter_than_an_interval_publishes_nothing_unless_it_announces() -> None:
    """Without `announce`, a run over before its first tick sends no progress: its counts are in its report."""
    recorder = Recorder()
    with ProgressReporter(total=3, interval=60, publish=recorder, announce=False) as reporter:
        reporter.advance(completed=3)
    reporter.wait_published(5)
    assert recorder.published == []


def test_a_run_not_announced_publishes_nothing_within_its_quiet_time() -> None:
    """Ticks come every `interval`, but a run not announced that ends within `quiet` seconds sends nothing."""
    recorder = Recorder()
    with ProgressReporter(total=3, interval=0.01, publish=recorder, announce=False, quiet=60) as reporter:
        reporter.advance(completed=1)
        time.sleep(0.1)
        reporter.advance(completed=2)
    reporter.wait_published(5)
    assert recorder.published == []


def test_a_run_that_showed_progress_gets_its_final_count() -> None:
    """Once a tick has published, the final count follows at the end, as with `announce`."""
    recorder = Recorder()
    with ProgressReporter(total=3, interval=0.01, publish=recorder, announce=False, quiet=0.01) as reporter:
        reporter.advance(completed=1)
        wait_for(lambda: recorder.published, 5, "a tick to publish", interval=0.01)
        reporter.advance(completed=2)
    reporter.wait_published(5)
    assert recorder.published[-1] == Progress(total=3, completed=3)


def test_a_run_that_stops_on_an_exception_stops_publishing_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Suspended (Prefect's Pause) or failed: no final-state hook may come, so the thread ends now, not then."""
    from uuid import uuid4

    from fanout.core import wrap_up

    monkeypatch.setattr(wrap_up, "_current_flow_run_id", lambda: uuid4())
    settled = ProgressReporter(total=1, interval=60, publish=Recorder(), announce=False)
    with settled:
        pass
    suspended = ProgressReporter(total=1, interval=60, publish=Recorder(), announce=False)
    with pytest.raises(KeyboardInterrupt), suspended:
        raise KeyboardInterrupt
    suspended.wait_published(5)
    settled.wait_published(0.05)
    assert suspended._thread is not None and not suspended._thread.is_alive()
    assert settled._thread is not None and settled._thread.is_alive()  # until its run's final-state hook
    settled._stop.set()


def test_a_refused_connection_ends_the_final_attempts_at_once() -> None:
    """With nothing listening at the API (a test server already stopped), the final count is tried once, so
    the process is not held at exit."""
    import httpx

    attempts: list[Progress] = []

    def refused(progress: Progress) -> None:
        attempts.append(progress)
        raise httpx.ConnectError("[Errno 111] Connection refused")

    earlier = set(threading.enumerate())  # another test's publisher may still be winding down
    with ProgressReporter(total=2, interval=60, publish=refused) as reporter:
        publisher = next(t for t in threading.enumerate() if t.name == THREAD_NAME and t not in earlier)
        reporter.advance(completed=2)
    reporter.wait_published(5)  # a second final try would come 15 s (a quarter interval) later
    assert not publisher.is_alive()
    assert attempts == [Progress(2), Progress(2, 2, 0)]

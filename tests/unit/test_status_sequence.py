"""What a client polling the status URL sees across crashes, resumes and the give-up, over ASGITransport."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.support.fake_runs import FakeRuns
from tests.support.webhook_client import call, make_app

LABELS_16_OF_60 = {"fanout.total": 60, "fanout.completed": 16, "fanout.failed": 2}


def started(runs: FakeRuns, **settings: Any) -> tuple[Any, str]:
    app = make_app(runs, **settings)
    return app, call(app, "POST", "/api/start-fanout", json={"count": 60}).json()["id"]


def poll(app: Any, instance: str) -> httpx.Response:
    return call(app, "GET", f"/api/instances/{instance}")


def seen(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["runtimeStatus"]


CRASH_AND_RESUME: list[tuple[str, int, dict[str, Any]]] = [
    ("SCHEDULED", 0, {}),
    ("RUNNING", 1, LABELS_16_OF_60),
    ("CRASHED", 1, {}),  # the worker reports the crash...
    ("CRASHED", 1, {}),  # ...twice
    ("SCHEDULED", 1, {}),  # AwaitingRetry
    ("PENDING", 1, {}),
    ("RUNNING", 2, {"fanout.total": 60, "fanout.completed": 16, "fanout.failed": 0}),
    ("COMPLETED", 2, {}),
]


def test_a_client_sees_no_200_before_the_final_completed_across_a_crash() -> None:
    """Every poll between the start and the end of a crashed-then-resumed run answers 202; the last is 200 Completed."""
    runs = FakeRuns()
    app, instance = started(runs)
    answers = []
    for state_type, run_count, labels in CRASH_AND_RESUME:
        runs.set_state(instance, state_type, run_count=run_count, labels=labels, output=["x"] * 60)
        answers.append(seen(poll(app, instance)))
    assert all(code == 202 for code, _ in answers[:-1]), answers
    assert answers[-1] == (200, "Completed")
    assert {status for _, status in answers[:-1]} <= {"Pending", "Running"}


def test_a_crashed_run_with_retries_left_is_running_and_says_it_is_resuming() -> None:
    """Crashed at run count 1 (of 3 automatic retries): 202 Running, customStatus resuming with 1 resume."""
    runs = FakeRuns()
    app, instance = started(runs)
    runs.set_state(instance, "CRASHED", run_count=1, labels=LABELS_16_OF_60)
    response = poll(app, instance)
    custom = response.json()["customStatus"]
    assert seen(response) == (202, "Running") and response.headers["Location"]
    assert custom == {"total": 60, "completed": 16, "failed": 0, "resuming": True, "resumes": 1}


def test_a_rescheduled_run_is_pending_and_resuming() -> None:
    """AwaitingRetry after one attempt: 202 Pending, resuming, one resume."""
    runs = FakeRuns()
    app, instance = started(runs)
    runs.set_state(instance, "SCHEDULED", run_count=1)
    response = poll(app, instance)
    assert seen(response) == (202, "Pending")
    assert response.json()["customStatus"]["resuming"] is True and response.json()["customStatus"]["resumes"] == 1


def test_a_resumed_run_counts_its_resumes_and_is_no_longer_resuming() -> None:
    """Running at run count 2: 202 Running, resuming false, resumes 1."""
    runs = FakeRuns()
    app, instance = started(runs)
    runs.set_state(instance, "RUNNING", run_count=2)
    custom = poll(app, instance).json()["customStatus"]
    assert (custom["resuming"], custom["resumes"]) == (False, 1)


def test_a_running_run_a_standby_found_silent_says_it_is_resuming() -> None:
    """Running, marked `fanout.silent` after its attempt began (its host died): 202 Running, resuming."""
    runs = FakeRuns()
    app, instance = started(runs)
    began = datetime.now(UTC) - timedelta(seconds=30)
    silent = {"fanout.silent": (began + timedelta(seconds=20)).isoformat()}
    runs.set_state(instance, "RUNNING", run_count=1, labels={**LABELS_16_OF_60, **silent}, at=began)
    response = poll(app, instance)
    assert seen(response) == (202, "Running")
    assert response.json()["customStatus"] == {
        "total": 60,
        "completed": 16,
        "failed": 0,
        "resuming": True,
        "resumes": 1,
    }


def test_an_earlier_attempts_or_withdrawn_silent_mark_means_nothing() -> None:
    """A `fanout.silent` mark older than the current attempt, or emptied by a standby that heard the run again,
    leaves a Running run not resuming."""
    runs = FakeRuns()
    app, instance = started(runs)
    began = datetime.now(UTC)
    for mark in ((began - timedelta(seconds=5)).isoformat(), ""):
        runs.set_state(instance, "RUNNING", run_count=2, labels={"fanout.silent": mark}, at=began)
        assert poll(app, instance).json()["customStatus"]["resuming"] is False, mark


def test_a_crash_after_the_last_automatic_retry_is_200_failed() -> None:
    """Crashed at run count max_auto_retries + 1: no resume is coming, so 200 Failed."""
    runs = FakeRuns()
    app, instance = started(runs, max_auto_retries=2)
    runs.set_state(
        instance, "CRASHED", run_count=3, message="Flow run infrastructure exited with non-zero status code -9."
    )
    assert seen(poll(app, instance)) == (200, "Failed")


def test_the_give_up_automation_leaves_a_200_failed_saying_why() -> None:
    """Retries exhausted, the give-up automation marks the run Failed: 200 Failed with its message as output."""
    runs = FakeRuns()
    app, instance = started(runs, max_auto_retries=1)
    for state_type, run_count in [("RUNNING", 1), ("CRASHED", 1), ("SCHEDULED", 1), ("RUNNING", 2)]:
        runs.set_state(instance, state_type, run_count=run_count)
        assert poll(app, instance).status_code == 202
    runs.set_state(instance, "CRASHED", run_count=2)
    assert seen(poll(app, instance)) == (200, "Failed")
    runs.set_state(instance, "FAILED", run_count=2, message="fanout: crashed again after 1 automatic retries")
    response = poll(app, instance)
    assert seen(response) == (200, "Failed") and "automatic retries" in response.json()["output"]


def test_a_crash_that_never_reached_running_is_200_failed() -> None:
    """Crashed at run count 0 (never ran: nothing retries it) answers 200 Failed."""
    runs = FakeRuns()
    app, instance = started(runs)
    runs.set_state(instance, "CRASHED", run_count=0)
    assert seen(poll(app, instance)) == (200, "Failed")


def test_a_crash_nothing_resumed_within_the_deadline_is_200_failed() -> None:
    """Crashed with retries left but not resumed within FANOUT_RESUME_DEADLINE_SECONDS: 200 Failed, saying how to restart."""
    runs = FakeRuns()
    app, instance = started(runs, resume_deadline_seconds=60)
    long_ago = datetime.now(UTC) - timedelta(seconds=61)
    runs.set_state(instance, "CRASHED", run_count=1, message="crashed", at=long_ago)
    response = poll(app, instance)
    assert seen(response) == (200, "Failed") and "restart" in response.json()["output"]


def test_the_total_is_known_from_the_first_202() -> None:
    """Before the flow publishes anything, customStatus.total is the request's item count."""
    runs = FakeRuns()
    app, instance = started(runs)
    assert poll(app, instance).json()["customStatus"] == {
        "total": 60,
        "completed": 0,
        "failed": 0,
        "resuming": False,
        "resumes": 0,
    }

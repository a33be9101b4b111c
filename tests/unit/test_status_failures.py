"""The status document carries a finished run's failed items (the item report), over ASGITransport."""

from __future__ import annotations

from tests.support.fake_runs import FakeRuns
from tests.unit.webhook_client import call, make_app

REPORT = [{"item": "item-2", "status": "failed", "attempts": 4, "error": "TransientError: blip"}]


def started(runs: FakeRuns) -> tuple[object, str]:
    app = make_app(runs)
    response = call(app, "POST", "/api/start-fanout", json={"count": 3, "tolerated_failure_count": 1})
    return app, response.json()["id"]


def test_completed_with_tolerated_failures_lists_them() -> None:
    """A Completed run with a null in its output names the failed item, its attempts and last error."""
    runs = FakeRuns()
    app, instance = started(runs)
    runs.set_state(instance, "COMPLETED", output=["Processed item-1", None, "Processed item-3"], failures=REPORT)
    body = call(app, "GET", f"/api/instances/{instance}").json()
    assert body["output"][1] is None and body["failures"] == REPORT


def test_running_runs_have_no_failure_list_yet() -> None:
    """While running, failures stay empty: the report is published when the run settles."""
    runs = FakeRuns()
    app, instance = started(runs)
    runs.set_state(instance, "RUNNING", failures=REPORT)
    assert call(app, "GET", f"/api/instances/{instance}").json()["failures"] == []


def test_the_prefect_backend_answers_every_question_the_webhook_asks() -> None:
    """PrefectRuns (the real backend) has every method of the Runs protocol, `failures` included."""
    from deployments.runs import PrefectRuns, Runs

    asked = {name for name in vars(Runs) if not name.startswith("_")}
    assert "failures" in asked and all(callable(getattr(PrefectRuns, name, None)) for name in asked)

"""The status document carries a finished run's failed items (the item report), over ASGITransport."""

from __future__ import annotations

from fanout.service.runs import RunRecord
from fanout.storage.run_output import RunOutput
from tests.support.fake_runs import FakeRuns
from tests.support.webhook_client import call, make_app

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


class RecordedRuns(FakeRuns):
    """Runs whose output records carry the failed items, as a Completed run's record does."""

    async def output(self, run: RunRecord) -> RunOutput:
        return RunOutput(self.outputs.get(run.flow_run_id) or [], failures=REPORT)


def test_a_completed_run_lists_the_failures_its_output_record_holds_without_an_item_report() -> None:
    """A Completed run's failures come with its output (the item report is published after its final state)."""
    runs = RecordedRuns()
    app, instance = started(runs)
    runs.set_state(instance, "COMPLETED", output=["Processed item-1", None, "Processed item-3"])
    body = call(app, "GET", f"/api/instances/{instance}").json()
    assert body["failures"] == REPORT
    assert body["customStatus"]["failed"] == 1 and body["customStatus"]["completed"] == 2


def test_running_runs_have_no_failure_list_yet() -> None:
    """While running, failures stay empty: the report is published when the run settles."""
    runs = FakeRuns()
    app, instance = started(runs)
    runs.set_state(instance, "RUNNING", failures=REPORT)
    assert call(app, "GET", f"/api/instances/{instance}").json()["failures"] == []


def test_the_prefect_backend_answers_every_question_the_webhook_asks() -> None:
    """PrefectRuns (the real backend) has every method of the Runs protocol, `failures` included."""
    from fanout.service.runs import PrefectRuns, Runs

    asked = {name for name in vars(Runs) if not name.startswith("_")}
    assert "failures" in asked and all(callable(getattr(PrefectRuns, name, None)) for name in asked)


class LaggingApi:
    """A Prefect client whose task-run record still says Running: the API lags the work."""

    def read_task_run(self, task_run_id: object) -> object:
        from prefect.client.schemas.objects import TaskRun
        from prefect.states import Running

        return TaskRun(id=task_run_id, flow_run_id=None, task_key="k", dynamic_key="0", state=Running())


def test_an_item_that_finished_counts_as_completed_while_the_api_still_says_running(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A finished task run's items count from what the work returned, not the lagging task-run record ("failed": 2 of 16)."""
    import concurrent.futures
    import uuid

    import prefect.futures
    from prefect.futures import PrefectConcurrentFuture
    from prefect.states import Completed

    from fanout.core.outcome import ItemOutcome
    from fanout.engine.submission import task_outcomes
    from fanout.engine.tasks import BatchOutcomes

    monkeypatch.setattr(prefect.futures, "get_client", lambda **_: LaggingApi())
    work: concurrent.futures.Future[object] = concurrent.futures.Future()
    future = PrefectConcurrentFuture(task_run_id=uuid.uuid4(), wrapped_future=work)
    work.set_result(Completed(data=BatchOutcomes([ItemOutcome(item=f"item-{i}", value=i) for i in range(16)])))
    outcomes, _ = task_outcomes(future, [f"item-{i}" for i in range(16)])
    assert [outcome.ok for outcome in outcomes] == [True] * 16

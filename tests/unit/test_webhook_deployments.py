"""`POST /api/start-fanout/{deployment}`: any deployment of the flow, 404 for one Prefect does not know."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from fanout.service.runs import LABEL_DEPLOYMENT
from fanout.service.start_queue import StartQueue
from tests.support.fake_runs import FakeRuns
from tests.support.webhook_client import call, make_app


def test_a_start_of_a_named_deployment_creates_its_run_there(runs: FakeRuns) -> None:
    """A queued start of `http-enrich` becomes a run of `fan-out-fan-in/http-enrich`."""
    response = call(make_app(runs), "POST", "/api/start-fanout/http-enrich", json={"items": [{"id": 1}]})
    assert response.status_code == 202
    (run,) = runs.runs.values()
    assert run.instance_id == response.json()["id"] and run.labels[LABEL_DEPLOYMENT] == "fan-out-fan-in/http-enrich"


def test_a_start_naming_an_instance_runs_the_named_deployment_at_once(runs: FakeRuns) -> None:
    """A start with an instance id is created of the named deployment, and its status URL answers."""
    app = make_app(runs)
    response = call(app, "POST", "/api/start-fanout/http-enrich", json={"instance_id": "enrich-1", "count": 2})
    assert response.status_code == 202 and response.json()["id"] == "enrich-1"
    assert runs.of_instance("enrich-1")[0].labels[LABEL_DEPLOYMENT] == "fan-out-fan-in/http-enrich"
    assert call(app, "GET", "/api/instances/enrich-1").json()["runtimeStatus"] == "Pending"


def test_the_seed_route_still_runs_the_default_deployment(runs: FakeRuns) -> None:
    """`POST /api/start-fanout` keeps starting `FANOUT_DEPLOYMENT_NAME`."""
    call(make_app(runs), "POST", "/api/start-fanout")
    (run,) = runs.runs.values()
    assert run.labels[LABEL_DEPLOYMENT] == "fan-out-fan-in/default"


@pytest.mark.parametrize("name", ["fan-out-fan-in", "fan_out_fan_in"])
def test_the_seeds_flow_name_runs_its_default_deployment(runs: FakeRuns, name: str) -> None:
    """`POST /api/start-fanout/fan-out-fan-in` (the flow's name) starts the seed's request on the default deployment."""
    response = call(make_app(runs), "POST", f"/api/start-fanout/{name}", json={"instance_id": "by-flow", "count": 2})
    assert response.status_code == 202, response.text
    (run,) = runs.runs.values()
    assert run.labels[LABEL_DEPLOYMENT] == "fan-out-fan-in/default" and run.parameters["request"]["count"] == 2


@pytest.mark.parametrize("name", ["no-such-pipeline", "-dash-first", "bad name"])
def test_an_unknown_deployment_is_404_with_why_and_creates_nothing(runs: FakeRuns, name: str) -> None:
    """A deployment Prefect does not know: 404 naming it; nothing queued, no run."""
    app = make_app(runs)
    response = call(app, "POST", f"/api/start-fanout/{name}", json={"instance_id": "x", "count": 1})
    assert response.status_code == 404 and "nothing was started" in response.json()["detail"]
    assert runs.runs == {} and "start" not in runs.calls
    assert call(app, "GET", "/api/instances/x").status_code == 404


def test_a_generator_the_deployment_allows_is_admitted_for_that_deployment_only(runs: FakeRuns) -> None:
    """`http-enrich` lists its generator in its own FANOUT_SOURCES: 202 there, 403 on the seed's route."""
    app = make_app(runs)
    body = {"source": {"generator": "flows.http_enrich:urls", "params": {"n": 3}}, "item_key": "id"}
    assert call(app, "POST", "/api/start-fanout", json=body).status_code == 403
    assert call(app, "POST", "/api/start-fanout/http-enrich", json=body).status_code == 202
    (run,) = runs.runs.values()
    assert run.labels[LABEL_DEPLOYMENT] == "fan-out-fan-in/http-enrich"


def test_terminate_and_restart_work_for_a_run_of_another_deployment(runs: FakeRuns) -> None:
    """The instance routes find runs by instance, whichever deployment runs them."""
    app = make_app(runs)
    call(app, "POST", "/api/start-fanout/http-enrich", json={"instance_id": "enrich-2", "count": 1})
    runs.set_state("enrich-2", "RUNNING")
    assert call(app, "POST", "/api/instances/enrich-2/terminate").status_code == 202
    runs.set_state("enrich-2", "FAILED")
    assert call(app, "POST", "/api/instances/enrich-2/restart").status_code == 202
    assert runs.calls.count("terminate") == 1 and runs.calls.count("restart") == 1


def test_a_queue_file_from_before_deployments_opens_and_takes_starts(tmp_path: Path) -> None:
    """A start queue written without the `deployment` column gains it on open, its rows kept."""
    path = tmp_path / "starts.sqlite"
    with sqlite3.connect(path) as old:
        old.execute(
            "CREATE TABLE starts (key TEXT PRIMARY KEY, instance_id TEXT NOT NULL, request TEXT NOT NULL, "
            "digest TEXT NOT NULL, state TEXT NOT NULL, flow_run_id TEXT, error TEXT, accepted REAL NOT NULL)"
        )
        old.execute("INSERT INTO starts VALUES ('new:a', 'a', '{}', 'd', 'queued', NULL, NULL, 1.0)")
    queue = StartQueue(path, limit=10)
    queue.accept("new:b", "b", "{}", "d", "fan-out-fan-in/http-enrich")
    assert [(start.instance_id, start.deployment) for start in queue.queued(10)] == [
        ("a", None),
        ("b", "fan-out-fan-in/http-enrich"),
    ]
    queue.close()


def test_a_start_of_a_default_deployment_prefect_does_not_have_ends_failed_saying_so(runs: FakeRuns) -> None:
    """With no seed deployment on the server (a project of its own), a queued start fails naming it, not Pending for ever."""
    runs.deployments.pop(runs.default_deployment)
    app = make_app(runs)
    started = call(app, "POST", "/api/start-fanout")
    assert started.status_code == 202 and runs.runs == {}
    status = call(app, "GET", f"/api/instances/{started.json()['id']}")
    assert status.status_code == 200
    assert (status.json()["runtimeStatus"], status.json()["output"]) == (
        "Failed",
        "no deployment 'fan-out-fan-in/default' on the Prefect server",
    )

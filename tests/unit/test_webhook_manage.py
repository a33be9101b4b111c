"""Managing any run on the seed's `/api/` table: list, lookup by flow-run id, purge's report, the docs' token."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import pytest
from prefect.filesystems import LocalFileSystem

from fanout.storage.checkpoints import CheckpointStore
from tests.support.fake_instances import FakeManagedRuns
from tests.support.webhook_client import AUTH, TOKEN, call, make_app

DF = "/runtime/webhooks/durabletask"
PROCESSOR = "fanout.engine.processor:processed"


def get(runs: FakeManagedRuns, path: str, **options: object) -> httpx.Response:
    return call(make_app(runs), "GET", path, **options)  # type: ignore[arg-type]


def started(runs: FakeManagedRuns, instance_id: str, state: str = "COMPLETED") -> None:
    """An instance started through the webhook, then moved to `state`."""
    body = {"instance_id": instance_id}
    assert call(make_app(runs), "POST", "/api/start-fanout", json=body).status_code == 202
    runs.set_state(instance_id, state)


def listed(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [entry["instanceId"] for entry in response.json()]


def test_list_answers_every_instance_newest_first(runs: FakeManagedRuns) -> None:
    """GET /api/instances lists each instance once, newest first, with its runtimeStatus."""
    started(runs, "first")
    started(runs, "second", "RUNNING")
    response = get(runs, "/api/instances")
    assert listed(response) == ["second", "first"]
    assert [entry["runtimeStatus"] for entry in response.json()] == ["Running", "Completed"]


def test_list_includes_runs_started_without_the_webhook(runs: FakeManagedRuns) -> None:
    """A run with no instance tag (a deployment run) is listed under its flow-run id."""
    run = runs.add_run()
    assert listed(get(runs, "/api/instances")) == [str(run.flow_run_id)]


def test_list_filters_by_runtime_status(runs: FakeManagedRuns) -> None:
    """`runtimeStatus` keeps the instances in any of the listed statuses (names case-insensitive)."""
    started(runs, "done")
    started(runs, "broken", "FAILED")
    started(runs, "busy", "RUNNING")
    assert sorted(listed(get(runs, "/api/instances?runtimeStatus=completed,Failed"))) == ["broken", "done"]


def test_a_repeated_runtime_status_filter_keeps_the_union(runs: FakeManagedRuns) -> None:
    """`runtimeStatus=Completed&runtimeStatus=Failed` keeps both, as the comma list does."""
    started(runs, "done")
    started(runs, "broken", "FAILED")
    started(runs, "busy", "RUNNING")
    assert sorted(listed(get(runs, "/api/instances?runtimeStatus=Completed&runtimeStatus=Failed"))) == [
        "broken",
        "done",
    ]


def test_list_filters_by_created_time(runs: FakeManagedRuns) -> None:
    """`createdTimeFrom` / `createdTimeTo` bound the creation time, both inclusive."""
    started(runs, "early")
    started(runs, "late")
    created = {run.instance_id: run.created for run in runs.runs.values()}
    later = created["late"].isoformat()  # type: ignore[union-attr]
    assert listed(get(runs, "/api/instances", params={"createdTimeFrom": later})) == ["late"]
    assert listed(get(runs, "/api/instances", params={"createdTimeTo": later})) == ["late", "early"]


def test_list_pages_with_the_continuation_header_or_query_parameter(runs: FakeManagedRuns) -> None:
    """With `top`, the answer's x-ms-continuation-token, sent back as header or `continuationToken=`, reads on."""
    for name in ("a", "b", "c"):
        started(runs, name)
    first = get(runs, "/api/instances?top=2")
    token = first.headers["x-ms-continuation-token"]
    by_header = get(runs, "/api/instances?top=2", headers={**AUTH, "x-ms-continuation-token": token})
    by_query = get(runs, "/api/instances", params={"top": "2", "continuationToken": token})
    assert listed(first) == ["c", "b"]
    assert listed(by_header) == listed(by_query) == ["a"]
    assert "x-ms-continuation-token" not in by_query.headers


def test_the_next_page_misses_nothing_when_a_listed_instance_is_purged(runs: FakeManagedRuns) -> None:
    """Purging an instance of the first page between two reads leaves the second page as it was."""
    for name in ("a", "b", "c", "d"):
        started(runs, name)
    first = get(runs, "/api/instances?top=2")
    assert listed(first) == ["d", "c"]
    assert call(make_app(runs), "DELETE", "/api/instances/d").status_code == 200
    second = get(
        runs,
        "/api/instances?top=2",
        headers={**AUTH, "x-ms-continuation-token": first.headers["x-ms-continuation-token"]},
    )
    assert listed(second) == ["b", "a"]


def test_the_next_page_repeats_nothing_when_an_instance_starts_between_reads(runs: FakeManagedRuns) -> None:
    """An instance started between two reads is not on the second page (it is newer than the first)."""
    for name in ("a", "b", "c"):
        started(runs, name)
    first = get(runs, "/api/instances?top=2")
    started(runs, "new")
    second = get(
        runs,
        "/api/instances?top=2",
        headers={**AUTH, "x-ms-continuation-token": first.headers["x-ms-continuation-token"]},
    )
    assert listed(first) == ["c", "b"]
    assert listed(second) == ["a"]


def test_list_without_input_when_show_input_is_false(runs: FakeManagedRuns) -> None:
    """`showInput=false` lists each instance with `input: null`, as the Durable Functions list does."""
    started(runs, "quiet")
    (entry,) = get(runs, "/api/instances?showInput=false").json()
    assert entry["instanceId"] == "quiet" and entry["input"] is None


@pytest.mark.parametrize(
    "query, message",
    [
        ("runtimeStatus=Done", "unknown runtimeStatus 'Done'"),
        ("createdTimeFrom=yesterday", "createdTimeFrom must be an ISO 8601 time"),
        ("createdTimeFrom=2026-02-01&createdTimeTo=2026-01-01", "createdTimeFrom is after createdTimeTo"),
        ("top=0", "top must be an integer from 1 to 1000"),
        ("top=ten", "top must be an integer from 1 to 1000"),
        ("continuationToken=not-ours", "not a token this server gave"),
        ("showInput=bogus", "showInput must be true or false"),
    ],
)
def test_a_bad_filter_is_400_with_why(runs: FakeManagedRuns, query: str, message: str) -> None:
    """A filter that cannot be read answers 400 naming the part at fault."""
    response = get(runs, f"/api/instances?{query}")
    assert response.status_code == 400 and message in response.json()["detail"]


def test_the_seed_and_durable_lists_answer_the_same_instances(runs: FakeManagedRuns) -> None:
    """Both route tables list through one implementation: same instances, same statuses, same order."""
    started(runs, "one")
    started(runs, "two", "FAILED")
    seed = get(runs, "/api/instances").json()
    durable = get(runs, f"{DF}/instances").json()
    assert [(e["instanceId"], e["runtimeStatus"]) for e in seed] == [
        (e["instanceId"], e["runtimeStatus"]) for e in durable
    ]


def test_every_list_shows_the_custom_status_of_the_status_document(runs: FakeManagedRuns) -> None:
    """A Completed, resumed instance whose progress labels never landed: both lists show what its status shows."""
    body = {"instance_id": "resumed", "count": 200}
    assert call(make_app(runs), "POST", "/api/start-fanout", json=body).status_code == 202
    runs.set_state("resumed", "COMPLETED", run_count=2, failures=[])
    status = get(runs, "/api/instances/resumed").json()["customStatus"]
    assert status == {"total": 200, "completed": 200, "failed": 0, "resuming": False, "resumes": 1}
    assert [entry["customStatus"] for entry in get(runs, "/api/instances").json()] == [status]
    assert [entry["customStatus"] for entry in get(runs, f"{DF}/instances").json()] == [status]


def test_status_finds_a_run_by_its_flow_run_id(runs: FakeManagedRuns) -> None:
    """A run started without the webhook (no instance tag) answers on its flow-run id."""
    run = runs.add_run(instance_id="nightly")
    response = get(runs, f"/api/instances/{run.flow_run_id}")
    assert response.status_code == 200 and response.json()["instanceId"] == "nightly"


def test_terminate_and_restart_find_a_run_by_its_flow_run_id(runs: FakeManagedRuns) -> None:
    """Terminate and restart act on a run found by its flow-run id."""
    run = runs.add_run(state_type="RUNNING")
    app = make_app(runs)
    assert call(app, "POST", f"/api/instances/{run.flow_run_id}/terminate").status_code == 202
    runs.move(run, "CANCELLED")
    assert call(app, "POST", f"/api/instances/{run.flow_run_id}/restart").status_code == 202
    assert runs.calls[-2:] == ["terminate", "restart"]


def checkpoints_of(results: Path, instance_id: str, items: list[str]) -> Path:
    """The records a finished run of `items` left in result storage; the instance's folder."""
    store = CheckpointStore(LocalFileSystem(basepath=str(results)), instance_id, PROCESSOR)
    with store.journal("process_batch-0") as journal:
        for item in items:
            journal.append(item, f"Processed {item}")
    store.save_output(items, [f"Processed {item}" for item in items])
    return results / "fanout" / instance_id


def test_purge_deletes_checkpoints_artifacts_and_runs_and_reports_them(
    runs: FakeManagedRuns, clean_settings: Path
) -> None:
    """DELETE removes the instance's checkpoint files, its runs' artifacts and its runs, and counts each."""
    started(runs, "order-7")
    folder = checkpoints_of(clean_settings, "order-7", ["a", "b", "c"])
    (run,) = runs.runs.values()
    runs.artifacts[run.flow_run_id] = ["items", "metrics", "progress"]
    response = call(make_app(runs), "DELETE", "/api/instances/order-7")
    assert response.status_code == 200
    assert response.json() == {
        "instancesDeleted": 1,
        "runsDeleted": 1,
        "checkpointsDeleted": 3,
        "outputsDeleted": 1,
        "filesDeleted": 2,
        "artifactsDeleted": 3,
    }
    assert not folder.exists() and runs.runs == {}


def test_purge_by_flow_run_id_deletes_a_run_started_without_the_webhook(
    runs: FakeManagedRuns, clean_settings: Path
) -> None:
    """A deployment run with no instance id is purged by its flow-run id, checkpoints included."""
    run = runs.add_run()
    folder = checkpoints_of(clean_settings, str(run.flow_run_id), ["a"])
    response = call(make_app(runs), "DELETE", f"/api/instances/{run.flow_run_id}")
    assert response.status_code == 200
    assert (response.json()["runsDeleted"], response.json()["checkpointsDeleted"]) == (1, 1)
    assert not folder.exists() and runs.runs == {}


def test_purge_of_a_running_instance_is_409_and_keeps_its_checkpoints(
    runs: FakeManagedRuns, clean_settings: Path
) -> None:
    """A running instance is not purged: 409, and its runs and checkpoints stay."""
    started(runs, "busy", "RUNNING")
    folder = checkpoints_of(clean_settings, "busy", ["a"])
    assert call(make_app(runs), "DELETE", "/api/instances/busy").status_code == 409
    assert folder.exists() and len(runs.runs) == 1


def test_purge_through_an_old_flow_run_id_of_a_running_instance_is_409(runs: FakeManagedRuns) -> None:
    """An older, finished run's id does not purge an instance whose newest run is still running."""
    started(runs, "again")
    (old,) = runs.runs.values()
    assert call(make_app(runs), "POST", "/api/start-fanout", json={"instance_id": "again"}).status_code == 202
    runs.set_state("again", "RUNNING")
    response = call(make_app(runs), "DELETE", f"/api/instances/{old.flow_run_id}")
    assert response.status_code == 409 and len(runs.runs) == 2


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/openapi.json"])
def test_the_api_docs_need_the_token(runs: FakeManagedRuns, path: str) -> None:
    """/docs, /redoc and /openapi.json answer 401 with a Basic challenge without the token."""
    response = get(runs, path, headers={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    "headers",
    [AUTH, {"Authorization": "Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode()}],
)
def test_the_api_docs_answer_with_the_token(runs: FakeManagedRuns, headers: dict[str, str]) -> None:
    """With the bearer token, or the token as a browser's Basic password, the docs are served."""
    assert get(runs, "/docs", headers=headers).status_code == 200
    schema = get(runs, "/openapi.json", headers=headers).json()
    assert "/api/instances" in schema["paths"]

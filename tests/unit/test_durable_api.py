"""Durable Functions' HTTP API over ASGITransport, with in-memory runs: status codes and payload shapes."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.support.fake_instances import FakeManagedRuns
from tests.support.webhook_client import BASE, TOKEN, call, make_app

DF = "/runtime/webhooks/durabletask"
LINKS = {
    "id",
    "statusQueryGetUri",
    "sendEventPostUri",
    "terminatePostUri",
    "rewindPostUri",
    "purgeHistoryDeleteUri",
    "restartPostUri",
    "suspendPostUri",
    "resumePostUri",
    "uiUrl",
}


def request(runs: FakeManagedRuns, method: str, path: str, **options: object) -> httpx.Response:
    return call(make_app(runs), method, f"{DF}{path}", **options)  # type: ignore[arg-type]


def started(runs: FakeManagedRuns, instance_id: str, state: str = "RUNNING", **extra: object) -> None:
    """An instance started through the API, then moved to `state`."""
    assert request(runs, "POST", f"/orchestrators/fan_out_fan_in/{instance_id}").status_code == 202
    runs.set_state(instance_id, state, **extra)  # type: ignore[arg-type]


def test_start_answers_202_with_every_management_link(runs: FakeManagedRuns) -> None:
    """POST orchestrators/fan_out_fan_in answers 202, Location, and every Durable Functions link."""
    response = request(runs, "POST", "/orchestrators/fan_out_fan_in")
    body = response.json()
    assert response.status_code == 202
    assert set(body) == LINKS
    status = f"{BASE}{DF}/instances/{body['id']}"
    assert response.headers["location"] == body["statusQueryGetUri"] == status
    assert body["sendEventPostUri"] == f"{status}/raiseEvent/{{eventName}}"
    assert body["suspendPostUri"] == f"{status}/suspend?reason={{text}}"


def test_an_unknown_orchestrator_is_400_with_exception_message(runs: FakeManagedRuns) -> None:
    """An orchestrator name that maps to no deployment answers 400 with `ExceptionMessage`, and starts nothing."""
    response = request(runs, "POST", "/orchestrators/HelloCities")
    assert response.status_code == 400
    assert "HelloCities" in response.json()["ExceptionMessage"]
    assert runs.runs == {}


def test_the_clients_twice_encoded_input_becomes_the_flows_request(runs: FakeManagedRuns) -> None:
    """The client's input (a JSON string holding JSON) is the flow's request; the URL's id is the instance id."""
    body = json.dumps(json.dumps({"items": ["a", "b"]}))
    response = request(
        runs,
        "POST",
        "/orchestrators/fan_out_fan_in/nightly-1",
        content=body,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    assert response.json()["id"] == "nightly-1"
    (run,) = runs.runs.values()
    assert run.parameters == {"request": {"items": ["a", "b"], "instance_id": "nightly-1"}}


def test_a_bad_input_is_400_with_exception_message(runs: FakeManagedRuns) -> None:
    """Input the flow cannot take (unknown field) answers 400 with the reason, not 422."""
    response = request(runs, "POST", "/orchestrators/fan_out_fan_in", json={"colour": "red"})
    assert response.status_code == 400
    assert "colour" in response.json()["ExceptionMessage"]


def test_starting_a_running_instance_again_is_409(runs: FakeManagedRuns) -> None:
    """One active run per instance: a second start of a running instance id is refused."""
    started(runs, "busy")
    response = request(runs, "POST", "/orchestrators/fan_out_fan_in/busy")
    assert response.status_code == 409
    assert "busy" in response.json()["ExceptionMessage"]


def test_status_is_202_with_location_while_running(runs: FakeManagedRuns) -> None:
    """A running instance answers 202 with Location and Retry-After, and its input by default."""
    started(runs, "job")
    response = request(runs, "GET", "/instances/job")
    assert response.status_code == 202
    assert response.headers["location"].endswith(f"{DF}/instances/job")
    body = response.json()
    assert (body["name"], body["instanceId"], body["runtimeStatus"]) == ("fan_out_fan_in", "job", "Running")
    assert body["input"] == {"instance_id": "job"}


def test_status_is_200_with_output_when_completed(runs: FakeManagedRuns) -> None:
    """A Completed instance answers 200 with its output."""
    started(runs, "done", "COMPLETED", output=["r1"])
    response = request(runs, "GET", "/instances/done")
    assert response.status_code == 200
    assert response.json()["output"] == ["r1"]


def test_a_failed_instance_is_200_or_500_on_request(runs: FakeManagedRuns) -> None:
    """Failed answers 200, or 500 with returnInternalServerErrorOnFailure=true."""
    started(runs, "bad", "FAILED", message="3 of 5 items failed")
    assert request(runs, "GET", "/instances/bad").status_code == 200
    response = request(runs, "GET", "/instances/bad?returnInternalServerErrorOnFailure=true")
    assert response.status_code == 500
    assert response.json()["runtimeStatus"] == "Failed"


def test_status_of_an_unknown_instance_is_404(runs: FakeManagedRuns) -> None:
    """An unknown instance id answers 404."""
    assert request(runs, "GET", "/instances/nobody").status_code == 404


def test_status_finds_a_run_by_its_flow_run_id(runs: FakeManagedRuns) -> None:
    """The status route takes a flow-run id as well as an instance id."""
    started(runs, "by-run", "COMPLETED", output=[])
    (run,) = runs.runs.values()
    assert request(runs, "GET", f"/instances/{run.flow_run_id}").json()["instanceId"] == "by-run"


def test_show_input_false_leaves_the_input_out(runs: FakeManagedRuns) -> None:
    """showInput=false answers `input: null`."""
    started(runs, "quiet")
    assert request(runs, "GET", "/instances/quiet?showInput=false").json()["input"] is None


def test_show_history_lists_the_items_from_the_report(runs: FakeManagedRuns) -> None:
    """showHistory=true lists ExecutionStarted, one event per item row, and ExecutionCompleted."""
    started(runs, "hist", "COMPLETED", output=["A", "B", "C", "D", "E"])
    runs.rows["hist"] = [
        {
            "item": "item-1",
            "status": "succeeded",
            "attempts": 1,
            "duration_s": 0.1,
            "correlation_id": "c1",
            "error": "",
        },
        {
            "item": "item-2",
            "status": "succeeded",
            "attempts": 2,
            "duration_s": 0.2,
            "correlation_id": "c2",
            "error": "",
        },
    ]
    events = request(runs, "GET", "/instances/hist?showHistory=true&showHistoryOutput=true").json()["history"]
    assert [event["EventType"] for event in events] == [
        "ExecutionStarted",
        "TaskCompleted",
        "TaskCompleted",
        "ExecutionCompleted",
    ]
    assert (events[2]["Name"], events[2]["Attempts"], events[2]["Result"]) == ("item-2", 2, "B")


def test_list_answers_every_instance_newest_first(runs: FakeManagedRuns) -> None:
    """GET instances lists the latest run of each instance, newest first."""
    started(runs, "first")
    started(runs, "second", "COMPLETED")
    response = request(runs, "GET", "/instances/")
    assert response.status_code == 200
    assert [entry["instanceId"] for entry in response.json()] == ["second", "first"]


def test_list_filters_by_runtime_status_and_prefix(runs: FakeManagedRuns) -> None:
    """runtimeStatus (a comma list) and instanceIdPrefix narrow the list."""
    started(runs, "a-1", "COMPLETED")
    started(runs, "a-2", "FAILED")
    started(runs, "b-1", "COMPLETED")
    body = request(runs, "GET", "/instances?runtimeStatus=Completed,Failed&instanceIdPrefix=a-").json()
    assert sorted(entry["instanceId"] for entry in body) == ["a-1", "a-2"]


def test_a_repeated_runtime_status_filter_keeps_the_union(runs: FakeManagedRuns) -> None:
    """runtimeStatus given twice keeps the instances in either status, as the comma list does."""
    started(runs, "a-1", "COMPLETED")
    started(runs, "a-2", "FAILED")
    started(runs, "a-3", "RUNNING")
    body = request(runs, "GET", "/instances?runtimeStatus=Completed&runtimeStatus=Failed").json()
    assert sorted(entry["instanceId"] for entry in body) == ["a-1", "a-2"]


def test_list_filters_by_created_time(runs: FakeManagedRuns) -> None:
    """createdTimeFrom/To bound the instances' creation times."""
    started(runs, "old")
    started(runs, "new")
    created = runs.of_instance("new")[0].created
    assert created is not None
    stamp = created.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = request(runs, "GET", f"/instances?createdTimeFrom={stamp}").json()
    assert [entry["instanceId"] for entry in body] == ["new"]


def test_list_pages_with_the_continuation_token(runs: FakeManagedRuns) -> None:
    """`top` pages the list; x-ms-continuation-token fetches the next page, and the last has none."""
    for name in ("p1", "p2", "p3"):
        started(runs, name)
    first = request(runs, "GET", "/instances?top=2")
    token = first.headers["x-ms-continuation-token"]
    headers = {"Authorization": f"Bearer {TOKEN}", "x-ms-continuation-token": token}
    second = request(runs, "GET", "/instances?top=2", headers=headers)
    assert [e["instanceId"] for e in first.json()] + [e["instanceId"] for e in second.json()] == ["p3", "p2", "p1"]
    assert "x-ms-continuation-token" not in second.headers


@pytest.mark.parametrize("query", ["runtimeStatus=Sleeping", "createdTimeFrom=yesterday", "top=0"])
def test_a_bad_list_filter_is_400(runs: FakeManagedRuns, query: str) -> None:
    """An unknown status, an unreadable time or a bad page size answers 400 with the reason."""
    response = request(runs, "GET", f"/instances?{query}")
    assert response.status_code == 400
    assert response.json()["Message"]


def test_a_forged_continuation_token_is_400(runs: FakeManagedRuns) -> None:
    """A continuation token this server did not give answers 400."""
    headers = {"Authorization": f"Bearer {TOKEN}", "x-ms-continuation-token": "not-a-token"}
    assert request(runs, "GET", "/instances?top=1", headers=headers).status_code == 400


def test_terminate_is_202_while_running_and_410_once_finished(runs: FakeManagedRuns) -> None:
    """Terminate cancels a running instance (202); a finished one answers 410 Gone."""
    started(runs, "stop")
    assert request(runs, "POST", "/instances/stop/terminate?reason=enough").status_code == 202
    assert runs.calls[-1] == "terminate"
    runs.set_state("stop", "CANCELLED")
    assert request(runs, "POST", "/instances/stop/terminate?reason=again").status_code == 410


def test_suspend_then_resume(runs: FakeManagedRuns) -> None:
    """Suspend answers 202 and the instance reports Suspended (202 on status); resume schedules it again."""
    started(runs, "nap")
    assert request(runs, "POST", "/instances/nap/suspend?reason=lunch").status_code == 202
    status = request(runs, "GET", "/instances/nap")
    assert (status.status_code, status.json()["runtimeStatus"]) == (202, "Suspended")
    assert request(runs, "POST", "/instances/nap/resume?reason=back").status_code == 202
    assert request(runs, "GET", "/instances/nap").json()["runtimeStatus"] == "Pending"


def test_suspend_of_a_finished_instance_is_410(runs: FakeManagedRuns) -> None:
    """A finished instance cannot be suspended: 410, as the client expects."""
    started(runs, "over", "COMPLETED")
    assert request(runs, "POST", "/instances/over/suspend?reason=x").status_code == 410


def test_rewind_redrives_a_failed_instance(runs: FakeManagedRuns) -> None:
    """Rewind of a Failed instance runs its run again (only the failed items lack checkpoints): 202."""
    started(runs, "redo", "FAILED")
    assert request(runs, "POST", "/instances/redo/rewind?reason=fixed").status_code == 202
    assert runs.calls[-1] == "restart"


def test_rewind_of_an_instance_that_did_not_fail_is_410(runs: FakeManagedRuns) -> None:
    """Only a Failed instance is rewound; a Completed one answers 410."""
    started(runs, "fine", "COMPLETED")
    assert request(runs, "POST", "/instances/fine/rewind?reason=x").status_code == 410


def test_restart_with_a_new_id_answers_that_id(runs: FakeManagedRuns) -> None:
    """restartWithNewInstanceId=true starts the same input under a new id and answers the id."""
    started(runs, "orig", "COMPLETED")
    response = request(runs, "POST", "/instances/orig/restart?restartWithNewInstanceId=true")
    new_id = response.json()
    assert response.status_code == 202
    assert new_id != "orig" and runs.of_instance(new_id)


def test_restart_with_the_same_id_reruns_the_finished_instance(runs: FakeManagedRuns) -> None:
    """restartWithNewInstanceId=false runs the finished instance again and answers its own id."""
    started(runs, "again", "COMPLETED")
    response = request(runs, "POST", "/instances/again/restart?restartWithNewInstanceId=false")
    assert (response.status_code, response.json(), runs.calls[-1]) == (202, "again", "restart")


def test_restart_with_the_same_id_of_a_running_instance_is_409(runs: FakeManagedRuns) -> None:
    """A running instance is not started twice under its own id."""
    started(runs, "live")
    assert request(runs, "POST", "/instances/live/restart?restartWithNewInstanceId=false").status_code == 409


def test_raise_event_on_a_running_instance_is_accepted_with_a_message(runs: FakeManagedRuns) -> None:
    """No fanout orchestration waits for events: a running one accepts (202) and says the event is discarded."""
    started(runs, "ears")
    response = request(runs, "POST", "/instances/ears/raiseEvent/Approval", json={"ok": True})
    assert response.status_code == 202
    assert "discarded" in response.json()["Message"]


def test_raise_event_on_a_finished_instance_is_410(runs: FakeManagedRuns) -> None:
    """A finished instance answers 410 to an event."""
    started(runs, "deaf", "COMPLETED")
    assert request(runs, "POST", "/instances/deaf/raiseEvent/Approval", json=1).status_code == 410


def test_raise_event_with_a_body_that_is_not_json_is_400(runs: FakeManagedRuns) -> None:
    """An event body that is not JSON answers 400, never 500."""
    started(runs, "ears")
    response = request(runs, "POST", "/instances/ears/raiseEvent/Approval", content=b"{nope")
    assert response.status_code == 400


def test_purge_of_a_finished_instance_answers_the_count(runs: FakeManagedRuns) -> None:
    """DELETE instances/{id} of a finished instance answers 200 `instancesDeleted: 1`; then it is gone."""
    started(runs, "old", "COMPLETED")
    response = request(runs, "DELETE", "/instances/old")
    assert (response.status_code, response.json()["instancesDeleted"]) == (200, 1)
    assert request(runs, "GET", "/instances/old").status_code == 404


def test_purge_of_a_running_instance_deletes_nothing(runs: FakeManagedRuns) -> None:
    """A running instance is not purged: 404 with `instancesDeleted: 0` and the reason."""
    started(runs, "busy")
    response = request(runs, "DELETE", "/instances/busy")
    assert (response.status_code, response.json()["instancesDeleted"]) == (404, 0)
    assert "Running" in response.json()["Message"]


def test_purge_by_a_repeated_runtime_status_deletes_the_union(runs: FakeManagedRuns) -> None:
    """DELETE instances?runtimeStatus=Completed&runtimeStatus=Failed deletes the instances in either status."""
    started(runs, "c2", "COMPLETED")
    started(runs, "f2", "FAILED")
    response = request(
        runs, "DELETE", "/instances?createdTimeFrom=2000-01-01T00:00:00Z&runtimeStatus=Completed&runtimeStatus=Failed"
    )
    assert (response.status_code, response.json()["instancesDeleted"]) == (200, 2)


def test_purge_by_filter_deletes_the_finished_matches(runs: FakeManagedRuns) -> None:
    """DELETE instances?createdTimeFrom=&runtimeStatus= deletes the finished instances that match."""
    started(runs, "c1", "COMPLETED")
    started(runs, "f1", "FAILED")
    started(runs, "r1")
    response = request(
        runs, "DELETE", "/instances?createdTimeFrom=2000-01-01T00:00:00Z&runtimeStatus=Completed,Running"
    )
    assert (response.status_code, response.json()["instancesDeleted"]) == (200, 1)
    assert sorted(run.instance_id for run in runs.runs.values()) == ["f1", "r1"]


def test_purge_by_filter_needs_created_time_from(runs: FakeManagedRuns) -> None:
    """Purging without createdTimeFrom is refused (400), so nothing is deleted by accident."""
    started(runs, "keep", "COMPLETED")
    assert request(runs, "DELETE", "/instances").status_code == 400
    assert runs.of_instance("keep")


def test_no_token_is_401(runs: FakeManagedRuns) -> None:
    """Nothing is anonymous: a request without a token answers 401."""
    assert request(runs, "GET", "/instances", headers={}).status_code == 401


def test_the_token_as_code_authenticates_and_the_links_carry_it(runs: FakeManagedRuns) -> None:
    """`?code=<token>` authenticates, as Durable Functions' links do, and the answer's links carry it."""
    response = request(runs, "POST", f"/orchestrators/fan_out_fan_in?code={TOKEN}", headers={})
    assert response.status_code == 202
    assert response.json()["statusQueryGetUri"].endswith(f"?code={TOKEN}")
    assert response.json()["terminatePostUri"].endswith(f"?reason={{text}}&code={TOKEN}")


def test_the_token_as_basic_password_authenticates(runs: FakeManagedRuns) -> None:
    """Basic auth with the token as password (a base URL's `user:token@`) authenticates."""
    basic = base64.b64encode(f"fanout:{TOKEN}".encode()).decode()
    assert request(runs, "GET", "/instances", headers={"Authorization": f"Basic {basic}"}).status_code == 200


def test_a_wrong_code_is_401(runs: FakeManagedRuns) -> None:
    """A wrong `code=` answers 401."""
    assert request(runs, "GET", "/instances?code=wrong-wrong-wrong-wrong", headers={}).status_code == 401

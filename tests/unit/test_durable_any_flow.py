"""Durable Functions routes over deployments of flows other than the seed's (in-memory runs, ASGITransport)."""

from __future__ import annotations

import httpx
import pytest

from fanout.service.orchestrators import Orchestrator
from fanout.service.runs import LABEL_DEPLOYMENT, LABEL_FLOW, RunRecord
from tests.support.fake_instances import FakeManagedRuns
from tests.support.webhook_client import AUTH, call, make_app

DF = "/runtime/webhooks/durabletask"
BACKUP = Orchestrator("backup-site-content", "default", ("root_directory",), ("root_directory",))


@pytest.fixture
def runs() -> FakeManagedRuns:
    runs = FakeManagedRuns()
    runs.other_flows.append(BACKUP)
    return runs


def request(runs: FakeManagedRuns, method: str, path: str, **options: object) -> httpx.Response:
    return call(make_app(runs), method, f"{DF}{path}", **options)  # type: ignore[arg-type]


def test_a_json_string_input_starts_the_flow_named_with_it_as_its_required_parameter(runs: FakeManagedRuns) -> None:
    """`"/home/site"` to `orchestrators/BackupSiteContent` is a run of that flow with `root_directory="/home/site"`."""
    response = request(runs, "POST", "/orchestrators/Backup_Site_Content", content=b'"/home/site"')
    assert response.status_code == 202, response.text
    run = runs.of_instance(response.json()["id"])[0]
    assert run.parameters == {"root_directory": "/home/site"}
    assert run.labels[LABEL_FLOW] == "backup-site-content"
    assert run.labels[LABEL_DEPLOYMENT] == "backup-site-content/default"


def test_an_input_the_durable_client_encoded_twice_is_read_once(runs: FakeManagedRuns) -> None:
    """`azure-functions-durable` sends `json.dumps` of the input as a JSON string: the inner value is the input."""
    response = request(
        runs, "POST", "/orchestrators/backup-site-content/b-1", content=b'"{\\"root_directory\\": \\"/srv\\"}"'
    )
    assert response.status_code == 202
    assert runs.of_instance("b-1")[0].parameters == {"root_directory": "/srv"}


def test_an_unknown_orchestrator_answers_400_listing_the_names_known(runs: FakeManagedRuns) -> None:
    """The 400 names the deployments a start could name, and nothing is started."""
    response = request(runs, "POST", "/orchestrators/HelloCities", content=b'"x"')
    assert response.status_code == 400
    message = response.json()["ExceptionMessage"]
    assert "'backup-site-content'" in message and "'fan-out-fan-in/http-enrich'" in message
    assert runs.runs == {}


def test_malformed_json_input_answers_400_saying_so(runs: FakeManagedRuns) -> None:
    """A body that is not JSON is refused before anything starts."""
    response = request(runs, "POST", "/orchestrators/backup-site-content", content=b"/home/site")
    assert response.status_code == 400 and "malformed JSON" in response.json()["ExceptionMessage"]


def test_the_status_of_another_flow_shows_its_name_parameters_and_return_value(runs: FakeManagedRuns) -> None:
    """Once Completed, the status is 200 with the flow's name, its parameters as input, its return value as output."""
    assert request(runs, "POST", "/orchestrators/backup-site-content/b-2", content=b'"/home/site"').status_code == 202
    runs.set_state("b-2", "COMPLETED", output=1234)
    status = request(runs, "GET", "/instances/b-2")
    assert status.status_code == 200
    body = status.json()
    assert (body["name"], body["input"], body["output"]) == (
        "backup-site-content",
        {"root_directory": "/home/site"},
        1234,
    )
    assert body["customStatus"]["total"] is None


def test_a_restart_with_a_new_id_runs_the_same_flow_with_the_same_parameters(runs: FakeManagedRuns) -> None:
    """`restart` of another flow's instance starts that flow again with its parameters, under a new id."""
    assert request(runs, "POST", "/orchestrators/backup-site-content/b-3", content=b'"/a"').status_code == 202
    runs.set_state("b-3", "COMPLETED", output=1)
    response = request(runs, "POST", "/instances/b-3/restart")
    assert response.status_code == 202
    again = runs.of_instance(response.json())[0]
    assert again.parameters == {"root_directory": "/a"} and again.labels[LABEL_FLOW] == "backup-site-content"


def test_the_list_shows_another_flow_by_its_name_and_parameters(runs: FakeManagedRuns) -> None:
    """The list names each instance's own flow and input."""
    assert request(runs, "POST", "/orchestrators/backup-site-content/b-4", content=b'"/a"').status_code == 202
    (entry,) = request(runs, "GET", "/instances").json()
    assert (entry["name"], entry["input"]) == ("backup-site-content", {"root_directory": "/a"})


def test_the_api_start_route_reaches_another_flow_by_its_deployment_name(runs: FakeManagedRuns) -> None:
    """`POST /api/start-fanout/<name>` of another flow's deployment takes any JSON input, as the Durable route does."""
    response = call(make_app(runs), "POST", "/api/start-fanout/backup-site-content", content=b'"/srv"')
    assert response.status_code == 202, response.text
    assert runs.of_instance(response.json()["id"])[0].parameters == {"root_directory": "/srv"}


def test_an_unknown_deployment_on_the_api_route_is_404_listing_the_names_known(runs: FakeManagedRuns) -> None:
    """A name no deployment has: 404 naming it and what the server knows; nothing starts."""
    response = call(make_app(runs), "POST", "/api/start-fanout/nowhere", json={"count": 1})
    assert response.status_code == 404
    assert "'nowhere'" in response.json()["detail"] and "'backup-site-content'" in response.json()["detail"]
    assert runs.runs == {}


def test_a_flow_name_with_several_deployments_on_the_api_route_is_404_listing_them(runs: FakeManagedRuns) -> None:
    """A flow's name that names more than one of its deployments starts nothing and lists each of them."""
    runs.other_flows.append(Orchestrator("backup-site-content", "nightly", ("root_directory",), ("root_directory",)))
    response = call(make_app(runs), "POST", "/api/start-fanout/backup-site-content", content=b'"/srv"')
    assert response.status_code == 404 and runs.runs == {}
    detail = response.json()["detail"]
    assert "'backup-site-content/default'" in detail and "'backup-site-content/nightly'" in detail


def test_terminate_and_purge_act_on_another_flow_instance(runs: FakeManagedRuns) -> None:
    """Terminate cancels a running instance of another flow; once finished, purge deletes its runs."""
    assert request(runs, "POST", "/orchestrators/backup-site-content/b-5", content=b'"/a"').status_code == 202
    runs.set_state("b-5", "RUNNING")
    assert request(runs, "POST", "/instances/b-5/terminate").status_code == 202
    assert runs.of_instance("b-5")[0].state_type == "CANCELLING"
    runs.set_state("b-5", "CANCELLED")
    purged = request(runs, "DELETE", "/instances/b-5")
    assert purged.status_code == 200 and purged.json()["instancesDeleted"] == 1
    assert request(runs, "GET", "/instances/b-5").status_code == 404


def test_a_repeated_start_with_the_same_idempotency_key_is_the_same_instance(runs: FakeManagedRuns) -> None:
    """The same key and input answer the first instance, and one run exists; another input under it is 409."""
    key = {**AUTH, "Idempotency-Key": "backup-once"}
    first = request(runs, "POST", "/orchestrators/backup-site-content", content=b'"/a"', headers=key)
    again = request(runs, "POST", "/orchestrators/backup-site-content", content=b'"/a"', headers=key)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"] and len(runs.runs) == 1
    other = request(runs, "POST", "/orchestrators/backup-site-content", content=b'"/b"', headers=key)
    assert other.status_code == 409 and len(runs.runs) == 1


@pytest.mark.parametrize("body", [b'"\\ud800"', b'{"root_directory": "\\udfff"}', b"[" * 100 + b"]" * 100])
def test_an_input_no_flow_parameter_can_hold_is_400(runs: FakeManagedRuns, body: bytes) -> None:
    """A lone surrogate, or nesting deeper than an item may have, is refused before anything starts."""
    response = request(runs, "POST", "/orchestrators/backup-site-content", content=body)
    assert response.status_code == 400 and "cannot be a flow parameter" in response.json()["ExceptionMessage"]
    assert runs.runs == {}


class ReportAfterFinalState(FakeManagedRuns):
    """Runs as Prefect has them at the first read of a final state: the item report and the labels' last
    count land after it."""

    async def failures(self, run: RunRecord) -> list[dict[str, object]] | None:
        return self.failure_reports.get(run.flow_run_id)


LABELS_BEFORE_THE_END = {"fanout.total": 6, "fanout.completed": 0, "fanout.failed": 0}


def completed_backup(runs: FakeManagedRuns, instance: str, **state: object) -> None:
    """Start `backup-site-content` as `instance` and move it to Completed (output 30, labels of 0 of 6)."""
    assert request(runs, "POST", f"/orchestrators/backup-site-content/{instance}", content=b'"/a"').status_code == 202
    runs.set_state(instance, "COMPLETED", output=30, labels=LABELS_BEFORE_THE_END, **state)  # type: ignore[arg-type]


def test_the_first_completed_status_of_another_flow_counts_its_recorded_items() -> None:
    """The first 200 of a Completed run shows the items its stage recorded as done, not its labels' lagging 0."""
    runs = ReportAfterFinalState()
    runs.other_flows.append(BACKUP)
    completed_backup(runs, "b-6", recorded=(6, 0))
    body = call(make_app(runs), "GET", "/api/instances/b-6").json()
    assert (body["runtimeStatus"], body["output"]) == ("Completed", 30)
    assert body["customStatus"] == {"total": 6, "completed": 6, "failed": 0, "resuming": False, "resumes": 0}


def test_a_completed_run_of_another_flow_counts_its_recorded_tolerated_failures() -> None:
    """Items the stage recorded as failed count as failed, the rest as completed, before the item report."""
    runs = ReportAfterFinalState()
    runs.other_flows.append(BACKUP)
    completed_backup(runs, "b-7", recorded=(6, 1))
    custom = request(runs, "GET", "/instances/b-7").json()["customStatus"]
    assert (custom["total"], custom["completed"], custom["failed"]) == (6, 5, 1)


def test_the_list_counts_a_completed_run_of_another_flow_from_its_record() -> None:
    """A list entry has the same counts as the status document of the run."""
    runs = ReportAfterFinalState()
    runs.other_flows.append(BACKUP)
    completed_backup(runs, "b-8", recorded=(6, 0))
    (entry,) = call(make_app(runs), "GET", "/api/instances").json()
    assert (entry["customStatus"]["total"], entry["customStatus"]["completed"]) == (6, 6)


def test_a_completed_run_of_another_flow_without_a_record_counts_every_labelled_item_as_finished() -> None:
    """Without a record (a flow that names its own instance), Completed means each item of its labels finished."""
    runs = ReportAfterFinalState()
    runs.other_flows.append(BACKUP)
    completed_backup(runs, "b-9")
    custom = request(runs, "GET", "/instances/b-9").json()["customStatus"]
    assert (custom["total"], custom["completed"], custom["failed"]) == (6, 6, 0)

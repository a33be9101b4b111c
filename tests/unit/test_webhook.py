"""The webhook's HTTP contract, in-process over ASGITransport with an in-memory Prefect stand-in."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from fanout.api.webhook import WebhookConfigurationError, create_app
from fanout.core.settings import FanoutSettings
from fanout.service.webhook_errors import PrefectUnavailable
from tests.support.fake_runs import FakeRuns
from tests.support.webhook_client import AUTH, BASE, TOKEN, call, make_app, with_client

MANAGEMENT_FIELDS = {"id", "statusQueryGetUri", "terminatePostUri", "restartPostUri", "purgeHistoryDeleteUri", "uiUrl"}


def start(app, **options) -> httpx.Response:  # type: ignore[no-untyped-def]
    return call(app, "POST", "/api/start-fanout", **options)


def test_start_answers_202_with_the_management_urls(runs: FakeRuns) -> None:
    """POST /api/start-fanout answers 202, Location and Retry-After, and the seed's management payload."""
    response = start(make_app(runs))
    assert response.status_code == 202
    body = response.json()
    assert set(body) == MANAGEMENT_FIELDS
    status = f"{BASE}/api/instances/{body['id']}"
    assert response.headers["location"] == body["statusQueryGetUri"] == status
    assert body["terminatePostUri"] == f"{status}/terminate"
    assert body["restartPostUri"] == f"{status}/restart"
    assert body["purgeHistoryDeleteUri"] == status
    assert body["uiUrl"] is None  # queued: its flow run does not exist yet
    assert int(response.headers["retry-after"]) >= 1


def test_a_start_naming_an_instance_links_its_runs_page(runs: FakeRuns) -> None:
    """A start with an instance id creates its run at once, so `uiUrl` is the run's Prefect page."""
    body = start(make_app(runs), json={"instance_id": "nightly-7"}).json()
    assert body["uiUrl"].startswith("http://prefect.test/runs/flow-run/")


def test_an_empty_body_starts_the_seeds_five_items_with_an_explicit_instance_id(runs: FakeRuns) -> None:
    """Without a body the run gets the default request, and the returned id as its instance id."""
    body = start(make_app(runs)).json()
    (run,) = runs.runs.values()
    assert run.parameters == {"request": {"instance_id": body["id"]}}


def test_the_body_fields_become_the_flows_request(runs: FakeRuns) -> None:
    """count/items/instance_id in the body are passed as the flow's one `request` parameter."""
    body = start(make_app(runs), json={"items": ["a", "b"], "instance_id": "nightly-1"}).json()
    assert body["id"] == "nightly-1"
    (run,) = runs.runs.values()
    assert run.parameters == {"request": {"items": ["a", "b"], "instance_id": "nightly-1"}}


def test_public_url_setting_is_used_for_the_links(runs: FakeRuns) -> None:
    """With FANOUT_WEBHOOK_PUBLIC_URL set, the management URLs use it instead of the request's host."""
    body = start(make_app(runs, webhook_public_url="https://fanout.example/")).json()
    assert body["statusQueryGetUri"] == f"https://fanout.example/api/instances/{body['id']}"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": TOKEN},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_missing_or_wrong_token_is_401_and_starts_nothing(runs: FakeRuns, headers: dict[str, str]) -> None:
    """Without the exact bearer token every route answers 401 and no run is created."""
    app = make_app(runs)
    assert start(app, headers=headers).status_code == 401
    assert call(app, "GET", "/api/instances/abc", headers=headers).status_code == 401
    assert runs.runs == {}


def test_the_app_refuses_to_start_without_a_token() -> None:
    """No token and no explicit anonymous switch: the app is not created."""
    with pytest.raises(WebhookConfigurationError, match="FANOUT_WEBHOOK_TOKEN"):
        create_app(FanoutSettings(_env_file=None), runs=FakeRuns())  # type: ignore[call-arg]


def test_anonymous_access_must_be_switched_on_explicitly(runs: FakeRuns) -> None:
    """With webhook_allow_anonymous and no token, requests need no Authorization."""
    app = create_app(FanoutSettings(_env_file=None, webhook_allow_anonymous=True), runs=runs)  # type: ignore[call-arg]
    assert start(app, headers={}).status_code == 202


def test_health_needs_no_token(runs: FakeRuns) -> None:
    """GET /health answers 200 without a token (for load balancers and `fanout up`)."""
    assert call(make_app(runs), "GET", "/health", headers={}).json() == {"status": "ok", "queuedStarts": 0}


def test_health_is_503_when_prefect_cannot_be_reached(runs: FakeRuns) -> None:
    """When the Prefect API does not answer, /health says so with 503, so a supervisor can act."""
    runs.unreachable = "Prefect API unreachable: ConnectError()"
    response = call(make_app(runs), "GET", "/health", headers={})
    assert response.status_code == 503 and "unreachable" in response.json()["detail"]


def test_status_is_202_with_location_while_pending_and_running(runs: FakeRuns) -> None:
    """The status URL answers 202 with Location and Retry-After until the run finishes."""
    app = make_app(runs)
    instance = start(app).json()["id"]
    for state in ("SCHEDULED", "RUNNING"):
        runs.set_state(instance, state)
        response = call(app, "GET", f"/api/instances/{instance}")
        assert response.status_code == 202
        assert response.headers["location"].endswith(f"/api/instances/{instance}")
        assert response.headers["retry-after"] == "1"
    assert response.json()["runtimeStatus"] == "Running"


def test_status_of_a_completed_run_is_200_with_the_output(runs: FakeRuns) -> None:
    """When Completed the status answers 200 with the seed's fields and the ordered output."""
    app = make_app(runs)
    instance = start(app, json={"count": 2}).json()["id"]
    labels = {"fanout.total": 2, "fanout.completed": 2, "fanout.failed": 0}
    runs.set_state(instance, "COMPLETED", output=["Processed item-1", "Processed item-2"], labels=labels)
    response = call(app, "GET", f"/api/instances/{instance}")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "fan-out-fan-in" and body["instanceId"] == instance
    assert body["runtimeStatus"] == "Completed"
    assert body["input"] == {"count": 2, "instance_id": instance}
    assert body["output"] == ["Processed item-1", "Processed item-2"]
    assert body["customStatus"] == {"total": 2, "completed": 2, "failed": 0, "resuming": False, "resumes": 0}
    assert body["createdTime"] and body["lastUpdatedTime"]


def test_custom_status_shows_live_progress(runs: FakeRuns) -> None:
    """While running, customStatus carries the counts the flow published as labels."""
    app = make_app(runs)
    instance = start(app, json={"count": 200}).json()["id"]
    runs.set_state(instance, "RUNNING", labels={"fanout.total": 200, "fanout.completed": 120, "fanout.failed": 1})
    body = call(app, "GET", f"/api/instances/{instance}").json()
    assert body["customStatus"] == {"total": 200, "completed": 120, "failed": 1, "resuming": False, "resumes": 0}


def test_a_failed_run_reports_its_failed_items_as_output(runs: FakeRuns) -> None:
    """When Failed the status answers 200 and `output` is the message naming each failed item."""
    app = make_app(runs)
    instance = start(app).json()["id"]
    message = "Flow run encountered an exception: ItemsFailed: 1 of 5 items failed: item-2: ValueError: broken"
    runs.set_state(instance, "FAILED", message=message)
    response = call(app, "GET", f"/api/instances/{instance}")
    assert response.status_code == 200
    assert response.json()["runtimeStatus"] == "Failed"
    assert "item-2: ValueError: broken" in response.json()["output"]


def test_unknown_instance_is_404(runs: FakeRuns) -> None:
    """The status URL of an instance that never existed answers 404."""
    assert call(make_app(runs), "GET", "/api/instances/nope").status_code == 404


def test_terminate_cancels_a_running_instance(runs: FakeRuns) -> None:
    """POST terminate asks Prefect to cancel, answers 202, and the status then reads Running until Cancelled."""
    app = make_app(runs)
    instance = start(app).json()["id"]
    runs.set_state(instance, "RUNNING")
    response = call(app, "POST", f"/api/instances/{instance}/terminate")
    assert response.status_code == 202 and runs.calls[-1] == "terminate"
    runs.set_state(instance, "CANCELLED")
    status = call(app, "GET", f"/api/instances/{instance}")
    assert status.status_code == 200 and status.json()["runtimeStatus"] == "Terminated"


def test_terminate_of_a_finished_instance_is_409(runs: FakeRuns) -> None:
    """A finished instance cannot be terminated."""
    app = make_app(runs)
    instance = start(app).json()["id"]
    runs.set_state(instance, "COMPLETED")
    assert call(app, "POST", f"/api/instances/{instance}/terminate").status_code == 409


def test_restart_reschedules_the_same_instance(runs: FakeRuns) -> None:
    """POST restart on a finished instance puts its run back to Scheduled and answers 202 with its URLs."""
    app = make_app(runs)
    instance = start(app).json()["id"]
    runs.set_state(instance, "FAILED", message="1 of 5 items failed")
    response = call(app, "POST", f"/api/instances/{instance}/restart")
    assert response.status_code == 202 and response.json()["id"] == instance
    assert runs.calls[-1] == "restart" and len(runs.runs) == 1
    assert call(app, "GET", f"/api/instances/{instance}").json()["runtimeStatus"] == "Pending"


def test_restart_of_a_running_instance_is_409(runs: FakeRuns) -> None:
    """An instance still running is not restarted."""
    app = make_app(runs)
    instance = start(app).json()["id"]
    runs.set_state(instance, "RUNNING")
    assert call(app, "POST", f"/api/instances/{instance}/restart").status_code == 409


def test_purge_deletes_the_history_and_status_then_404(runs: FakeRuns) -> None:
    """DELETE on a finished instance purges its runs; its status URL then answers 404."""
    app = make_app(runs)
    instance = start(app).json()["id"]
    runs.set_state(instance, "COMPLETED")
    response = call(app, "DELETE", f"/api/instances/{instance}")
    assert response.status_code == 200 and response.json()["instancesDeleted"] == 1
    assert call(app, "GET", f"/api/instances/{instance}").status_code == 404


def test_purge_of_a_running_instance_is_409(runs: FakeRuns) -> None:
    """A running instance's history is not purged."""
    app = make_app(runs)
    instance = start(app).json()["id"]
    assert call(app, "DELETE", f"/api/instances/{instance}").status_code == 409


def test_a_repeated_idempotency_key_returns_the_same_instance(runs: FakeRuns) -> None:
    """The same Idempotency-Key and body return the first instance; one run exists."""
    app = make_app(runs)
    headers = {**AUTH, "Idempotency-Key": "order-17"}
    first = start(app, json={"count": 3}, headers=headers).json()
    again = start(app, json={"count": 3}, headers=headers).json()
    assert first == again and len(runs.runs) == 1


def post_burst(runs: FakeRuns, key: str, count: int = 50) -> list[httpx.Response]:
    """`count` concurrent POSTs of one body with one Idempotency-Key."""
    headers = {**AUTH, "Idempotency-Key": key}

    async def burst(client: httpx.AsyncClient) -> list[httpx.Response]:
        posts = [client.post("/api/start-fanout", json={"count": 2}, headers=headers) for _ in range(count)]
        return list(await asyncio.gather(*posts))

    return with_client(make_app(runs), burst)


def test_concurrent_posts_with_one_key_create_one_run(runs: FakeRuns) -> None:
    """50 concurrent POSTs with one Idempotency-Key all get the same instance."""
    responses = post_burst(runs, "burst")
    assert {response.status_code for response in responses} == {202}
    assert len({response.json()["id"] for response in responses}) == 1
    assert len(runs.runs) == 1


def test_concurrent_posts_with_one_key_ask_the_prefect_api_once(runs: FakeRuns) -> None:
    """Of 50 concurrent POSTs with one Idempotency-Key, one creates the run; the rest wait and reuse it."""
    post_burst(runs, "burst-once")
    assert runs.calls.count("start") == 1


def test_the_same_key_with_another_body_is_409(runs: FakeRuns) -> None:
    """Reusing an Idempotency-Key with a different body is refused with 409, nothing new starts."""
    app = make_app(runs)
    headers = {**AUTH, "Idempotency-Key": "order-18"}
    start(app, json={"count": 3}, headers=headers)
    response = start(app, json={"count": 4}, headers=headers)
    assert response.status_code == 409 and "different body" in response.json()["detail"]
    assert len(runs.runs) == 1


def test_a_busy_instance_id_is_409(runs: FakeRuns) -> None:
    """Starting an instance id whose run has not finished is refused; after it finished, it runs again."""
    app = make_app(runs)
    start(app, json={"instance_id": "daily"})
    assert start(app, json={"instance_id": "daily"}).status_code == 409
    runs.set_state("daily", "FAILED")
    assert start(app, json={"instance_id": "daily"}).status_code == 202
    assert len(runs.of_instance("daily")) == 2


def test_prefect_unavailable_on_a_read_is_503_with_retry_after(runs: FakeRuns) -> None:
    """When the Prefect API fails where a route reads it, the answer is 503 with Retry-After and why."""

    async def down(*args: object) -> None:
        raise PrefectUnavailable("Prefect API answered 503")

    runs.latest = down  # type: ignore[method-assign, assignment]
    response = call(make_app(runs), "GET", "/api/instances/anything")
    assert response.status_code == 503 and response.headers["retry-after"]
    assert response.json()["detail"] == "Prefect API answered 503"


def test_a_timeout_that_is_not_prefects_is_not_a_503(runs: FakeRuns) -> None:
    """Only Prefect's unavailability becomes 503: another TimeoutError is a server error, not "retry later"."""

    async def broken(*args: object) -> None:
        raise TimeoutError("some other timeout")

    runs.latest = broken  # type: ignore[method-assign, assignment]
    app = make_app(runs)

    async def get(client: httpx.AsyncClient) -> httpx.Response:
        return await client.get("/api/instances/anything", headers=AUTH)

    with pytest.raises(TimeoutError):
        with_client(app, get)

"""How starts are accepted: queued and answered at once, refused when the queue is full, one run per instance."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from prefect.filesystems import LocalFileSystem

from fanout.api.deps import WebhookState
from fanout.inputs.request import FanoutRequest
from fanout.service.webhook_errors import PrefectUnavailable
from fanout.storage import lease
from tests.support.fake_runs import FakeRuns
from tests.support.webhook_client import AUTH, BASE, call, make_app


def state(app: FastAPI) -> WebhookState:
    webhook: WebhookState = app.state.webhook
    return webhook


async def posts(
    app: FastAPI, bodies: list[dict[str, Any]], headers: list[dict[str, str]] | None = None
) -> list[httpx.Response]:
    """POST every body at once, without letting the submitter run in between."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=10) as client:
        sends = [
            client.post("/api/start-fanout", json=body, headers={**AUTH, **(headers[i] if headers else {})})
            for i, body in enumerate(bodies)
        ]
        return list(await asyncio.gather(*sends))


def test_a_start_is_answered_before_its_run_exists_and_the_submitter_creates_it(runs: FakeRuns) -> None:
    """The 202 comes from the start queue; the submitter then creates exactly one run for it."""
    app = make_app(runs)
    (response,) = asyncio.run(posts(app, [{"count": 3}]))
    assert response.status_code == 202 and runs.runs == {}
    asyncio.run(state(app).instances.submitter.drain())  # type: ignore[union-attr]
    (run,) = runs.runs.values()
    assert run.instance_id == response.json()["id"]
    assert run.parameters == {"request": {"count": 3, "instance_id": response.json()["id"]}}


def test_a_queued_start_reads_pending_with_its_total(runs: FakeRuns) -> None:
    """Before its run exists, the status URL answers 202 Pending with the planned total."""
    app = make_app(runs)
    (response,) = asyncio.run(posts(app, [{"count": 7}]))
    assert runs.runs == {}
    status = call(app, "GET", response.headers["location"].removeprefix(BASE))
    assert status.status_code == 202
    assert status.json()["runtimeStatus"] == "Pending" and status.json()["customStatus"]["total"] == 7


def test_a_full_start_queue_refuses_with_429_and_retry_after_and_starts_nothing(runs: FakeRuns) -> None:
    """Past FANOUT_WEBHOOK_MAX_QUEUED_STARTS a start gets 429 + Retry-After, and nothing is created for it."""
    app = make_app(runs, webhook_max_queued_starts=3)
    responses = asyncio.run(posts(app, [{"count": 1}] * 5))
    codes = sorted(response.status_code for response in responses)
    assert codes == [202, 202, 202, 429, 429]
    refused = [response for response in responses if response.status_code == 429]
    assert all(response.headers["retry-after"] == "1" for response in refused)
    asyncio.run(state(app).instances.submitter.drain())  # type: ignore[union-attr]
    assert len(runs.runs) == 3


def test_two_hundred_concurrent_starts_with_distinct_keys_all_get_202_and_one_run_each(runs: FakeRuns) -> None:
    """A burst of 200 distinct starts is accepted whole; each becomes exactly one run."""
    app = make_app(runs)
    keys = [{"Idempotency-Key": f"burst-{i}"} for i in range(200)]
    responses = asyncio.run(posts(app, [{"count": 1}] * 200, keys))
    assert {response.status_code for response in responses} == {202}
    asyncio.run(state(app).instances.submitter.drain())  # type: ignore[union-attr]
    assert len(runs.runs) == 200 == len({response.json()["id"] for response in responses})


def test_a_start_queued_while_prefect_is_down_is_created_once_it_is_back(runs: FakeRuns) -> None:
    """A create that meets an unavailable Prefect stays queued (Pending) and is sent again, making one run."""
    app = make_app(runs)
    real_start = runs.start
    failures = iter([PrefectUnavailable("Prefect API answered 503")])

    async def flaky(*args: Any) -> Any:
        error = next(failures, None)
        if error is not None:
            raise error
        return await real_start(*args)

    runs.start = flaky  # type: ignore[method-assign]
    (response,) = asyncio.run(posts(app, [{"count": 2}]))
    submitter = state(app).instances.submitter  # type: ignore[union-attr]
    assert asyncio.run(submitter.drain()) is False and runs.runs == {}
    assert asyncio.run(submitter.drain()) is True
    (run,) = runs.runs.values()
    assert run.instance_id == response.json()["id"]


def test_a_start_prefect_refuses_for_good_reads_failed_with_why(runs: FakeRuns) -> None:
    """A create Prefect answers with a 4xx is not retried: the status says Failed and gives Prefect's reason."""
    app = make_app(runs)

    async def refused(*args: Any) -> Any:
        request = httpx.Request("POST", "http://prefect.test/api/deployments/x/create_flow_run")
        raise httpx.HTTPStatusError(
            "409", request=request, response=httpx.Response(409, text="bad parameters", request=request)
        )

    runs.start = refused  # type: ignore[method-assign, assignment]
    (response,) = asyncio.run(posts(app, [{"count": 2}]))
    asyncio.run(state(app).instances.submitter.drain())  # type: ignore[union-attr]
    status = call(app, "GET", f"/api/instances/{response.json()['id']}")
    assert status.status_code == 200 and status.json()["runtimeStatus"] == "Failed"
    assert "bad parameters" in status.json()["output"]


def test_terminating_a_queued_start_means_it_never_runs(runs: FakeRuns) -> None:
    """Terminate before the run exists: Terminated, and the submitter creates nothing."""
    app = make_app(runs)
    (response,) = asyncio.run(posts(app, [{"count": 2}]))
    instance = response.json()["id"]
    assert call(app, "POST", f"/api/instances/{instance}/terminate").status_code == 202
    assert runs.runs == {}
    assert call(app, "GET", f"/api/instances/{instance}").json()["runtimeStatus"] == "Terminated"


def test_a_purge_while_the_terminated_start_is_being_created_leaves_no_run(runs: FakeRuns) -> None:
    """Terminate and purge land while the submitter's create is on its way: the run it makes is deleted, then 404."""
    app = make_app(runs)
    (response,) = asyncio.run(posts(app, [{"count": 2}]))
    instance = response.json()["id"]
    real_start, creating, release = runs.start, asyncio.Event(), asyncio.Event()

    async def held(*args: Any) -> Any:
        creating.set()
        await release.wait()
        return await real_start(*args)

    runs.start = held  # type: ignore[method-assign]

    async def scenario() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, headers=AUTH) as client:
            draining = asyncio.create_task(state(app).instances.submitter.drain())  # type: ignore[union-attr]
            await creating.wait()
            assert (await client.post(f"/api/instances/{instance}/terminate")).status_code == 202
            purging = asyncio.create_task(client.delete(f"/api/instances/{instance}"))
            await asyncio.sleep(0.05)
            release.set()
            purged, _ = await asyncio.gather(purging, draining)
            return purged.status_code, (await client.get(f"/api/instances/{instance}")).status_code

    assert asyncio.run(scenario()) == (200, 404)
    assert runs.runs == {}


def test_fifty_concurrent_starts_of_one_instance_make_one_run_and_409s_naming_it(runs: FakeRuns) -> None:
    """50 concurrent starts of one instance id: one 202, the rest 409 naming the run that is running."""
    app = make_app(runs)
    responses = asyncio.run(posts(app, [{"instance_id": "once"}] * 50))
    codes = [response.status_code for response in responses]
    assert codes.count(202) == 1 and codes.count(409) == 49
    (run,) = runs.runs.values()
    assert all(
        str(run.flow_run_id) in response.json()["detail"] for response in responses if response.status_code == 409
    )


def test_two_webhooks_starting_one_instance_at_once_make_one_run(runs: FakeRuns) -> None:
    """Two webhook processes (no shared lock) racing on one instance: Prefect's idempotency key keeps one run."""
    first, second = make_app(runs), make_app(runs)

    async def both() -> list[httpx.Response]:
        a, b = await asyncio.gather(posts(first, [{"instance_id": "race"}]), posts(second, [{"instance_id": "race"}]))
        return a + b

    responses = asyncio.run(both())
    assert sorted(response.status_code for response in responses) == [202, 409]
    assert len(runs.runs) == 1


def test_a_create_that_timed_out_but_landed_is_found_by_its_key(runs: FakeRuns) -> None:
    """When Prefect created the run but the answer timed out, the start finds it by key and answers 202."""
    app = make_app(runs)
    real_start = runs.start

    async def landed_then_timed_out(*args: Any) -> Any:
        await real_start(*args)
        raise PrefectUnavailable("no answer from the Prefect API in time (ReadTimeout)")

    runs.start = landed_then_timed_out  # type: ignore[method-assign]
    (response,) = asyncio.run(posts(app, [{"instance_id": "slow"}]))
    assert response.status_code == 202 and len(runs.runs) == 1


def test_a_repeat_with_the_same_key_of_a_named_instance_returns_it(runs: FakeRuns) -> None:
    """The same Idempotency-Key and body naming an instance return the instance, not a 409."""
    app = make_app(runs)
    headers = {**AUTH, "Idempotency-Key": "named-1"}
    first = call(app, "POST", "/api/start-fanout", json={"instance_id": "named"}, headers=headers)
    again = call(app, "POST", "/api/start-fanout", json={"instance_id": "named"}, headers=headers)
    assert first.status_code == again.status_code == 202 and len(runs.runs) == 1


def test_an_item_list_too_large_for_a_prefect_parameter_is_413_saying_why(runs: FakeRuns) -> None:
    """Items within the body limit but over Prefect's parameter limit: 413 naming the limit, nothing started."""
    app = make_app(runs, webhook_max_body_bytes=2_000_000)
    items = [f"item-{i:06d}-{'x' * 40}" for i in range(20_000)]
    response = call(
        app,
        "POST",
        "/api/start-fanout",
        content=json.dumps({"items": items}),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 413 and "524,288" in response.json()["detail"]
    assert runs.runs == {}


def test_an_integer_of_more_than_4300_digits_is_422_not_500(runs: FakeRuns) -> None:
    """A JSON integer Python refuses to read is a 4xx with a message."""
    response = call(
        make_app(runs),
        "POST",
        "/api/start-fanout",
        content='{"count": ' + "9" * 5000 + "}",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 422 and "4300" in response.json()["detail"]


def test_the_stored_request_is_the_flows_input_model(runs: FakeRuns) -> None:
    """What the queue stores reads back as the flow's `FanoutRequest`."""
    app = make_app(runs)
    asyncio.run(posts(app, [{"items": ["a", "b"], "tolerated_failure_count": 1}]))
    (start,) = state(app).instances.queue.queued(10)  # type: ignore[union-attr]
    request = FanoutRequest.model_validate_json(start.request)
    assert request.items == ["a", "b"] and request.instance_id == start.instance_id


def test_a_start_of_an_instance_leased_elsewhere_is_409_naming_the_holder(runs: FakeRuns, clean_settings: Path) -> None:
    """A run started elsewhere (another Prefect server) holds the lease in shared storage: 409, no run created."""
    lease.take(LocalFileSystem(basepath=str(clean_settings)), "shared-7", "their-flow-run", 60)
    response = call(make_app(runs), "POST", "/api/start-fanout", json={"count": 2, "instance_id": "shared-7"})
    assert response.status_code == 409 and "their-flow-run" in response.text
    assert runs.runs == {}

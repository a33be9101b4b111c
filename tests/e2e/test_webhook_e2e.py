"""The webhook against a real Prefect server, a real `process` worker and uvicorn, over real HTTP."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.stack import LocalStack
from tests.e2e.conftest import executed_items, poll_until_finished, wait_for
from tests.unit.test_webhook_bad_requests import BAD_REQUESTS

pytestmark = pytest.mark.e2e

SEED_OUTPUT = [f"Processed item-{i}" for i in range(1, 6)]


def flow_runs(prefect_api: httpx.Client, **filters: Any) -> list[dict[str, Any]]:
    return list(prefect_api.post("/flow_runs/filter", json={"limit": 200, **filters}).json())


def test_seed_scenario_post_202_then_poll_to_200_with_five_results(webhook: httpx.Client, worker: Any) -> None:
    """POST /api/start-fanout → 202 → poll the status URL → 200, Completed, the seed's five results."""
    started = webhook.post("/api/start-fanout")
    assert started.status_code == 202
    assert started.headers["location"] == started.json()["statusQueryGetUri"]
    done = poll_until_finished(webhook, started.headers["location"])
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["runtimeStatus"] == "Completed" and body["output"] == SEED_OUTPUT
    assert body["instanceId"] == started.json()["id"]
    assert body["customStatus"] == {"total": 5, "completed": 5, "failed": 0}


def test_ui_url_is_the_runs_page_on_the_prefect_server(webhook: httpx.Client, stack: LocalStack) -> None:
    """`uiUrl` opens the flow run's page in the Prefect UI."""
    ui_url = webhook.post("/api/start-fanout").json()["uiUrl"]
    assert ui_url.startswith(f"{stack.ui_url}/runs/flow-run/")
    assert httpx.get(ui_url, headers={"Accept": "text/html"}, timeout=30).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-token-at-all"}])
def test_without_the_right_token_the_answer_is_401(stack: LocalStack, prefect_api: httpx.Client, headers: dict[str, str]) -> None:
    """No token or a wrong token: 401, and no flow run is created."""
    before = len(flow_runs(prefect_api))
    response = httpx.post(f"{stack.webhook_url}/api/start-fanout", headers=headers, timeout=30)
    assert response.status_code == 401
    assert len(flow_runs(prefect_api)) == before


def test_fifty_concurrent_posts_with_one_key_create_exactly_one_run(webhook: httpx.Client, prefect_api: httpx.Client) -> None:
    """50 concurrent POSTs with one Idempotency-Key → one flow run, one instance id for all."""
    headers = {"Idempotency-Key": "e2e-burst-1"}
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda _: webhook.post("/api/start-fanout", json={"count": 3}, headers=headers), range(50)))
    assert {response.status_code for response in responses} == {202}
    ids = {response.json()["id"] for response in responses}
    assert len(ids) == 1
    (instance,) = ids
    runs = flow_runs(prefect_api, flow_runs={"tags": {"all_": [f"fanout.instance:{instance}"]}})
    assert len(runs) == 1


def test_the_same_key_with_another_body_is_409(webhook: httpx.Client, prefect_api: httpx.Client) -> None:
    """Reusing an Idempotency-Key with a different body is refused; only the first run exists."""
    headers = {"Idempotency-Key": "e2e-order-2"}
    assert webhook.post("/api/start-fanout", json={"count": 3}, headers=headers).status_code == 202
    before = len(flow_runs(prefect_api))
    again = webhook.post("/api/start-fanout", json={"count": 4}, headers=headers)
    assert again.status_code == 409 and "different body" in again.json()["detail"]
    assert len(flow_runs(prefect_api)) == before


RAW_HEADER_CASES = {"lying content-length"}


def test_bad_requests_start_nothing_and_the_app_stays_healthy(webhook: httpx.Client, prefect_api: httpx.Client) -> None:
    """Every kind of bad request gets its 4xx over real HTTP; no run is created; /health still answers."""
    before = len(flow_runs(prefect_api))
    for kind, (options, expected) in BAD_REQUESTS.items():
        if kind in RAW_HEADER_CASES:
            continue
        options = dict(options)
        headers = {name: value for name, value in options.pop("headers").items() if name != "Authorization"}
        if kind == "oversized body":
            options["content"] = json.dumps({"items": [f"item-{i}" for i in range(100_000)]})
        response = webhook.request(options.pop("method"), options.pop("url"), headers=headers, **options)
        assert response.status_code == expected, (kind, response.status_code, response.text)
    assert len(flow_runs(prefect_api)) == before
    assert webhook.get("/health").status_code == 200


def test_terminate_a_slow_run_reports_terminated(webhook: httpx.Client, start_worker: Any, execution_log: Path) -> None:
    """Terminating a running instance cancels its flow run; the status then says Terminated."""
    start_worker(FANOUT_TEST_SLEEP_MAX="3", FANOUT_MAX_PARALLEL="1")
    started = webhook.post("/api/start-fanout", json={"count": 30}).json()
    status_url = started["statusQueryGetUri"]
    wait_for(lambda: webhook.get(status_url).json()["runtimeStatus"] == "Running", what="Running")
    assert webhook.post(started["terminatePostUri"]).status_code == 202
    done = poll_until_finished(webhook, status_url, timeout=120)
    assert done.status_code == 200 and done.json()["runtimeStatus"] == "Terminated"
    assert len(executed_items(execution_log)) < 30


def test_restart_after_a_permanent_failure_runs_only_the_failed_item(
    webhook: httpx.Client, start_worker: Any, stack: LocalStack, execution_log: Path
) -> None:
    """A run whose item-2 always fails ends Failed naming it; after the processor is fixed, restart runs only item-2."""
    broken = start_worker(FANOUT_TEST_FAIL="item-2")
    started = webhook.post("/api/start-fanout", json={"count": 4}).json()
    failed = poll_until_finished(webhook, started["statusQueryGetUri"]).json()
    assert failed["runtimeStatus"] == "Failed"
    assert "item-2: ValueError: item-2 is broken" in failed["output"]
    assert failed["customStatus"] == {"total": 4, "completed": 3, "failed": 1}
    stack.stop_worker(broken)
    start_worker()  # the fixed processor: FANOUT_TEST_FAIL no longer set
    assert webhook.post(started["restartPostUri"]).status_code == 202
    done = poll_until_finished(webhook, started["statusQueryGetUri"]).json()
    assert done["runtimeStatus"] == "Completed"
    assert done["output"] == [f"Processed item-{i}" for i in range(1, 5)]
    assert executed_items(execution_log) == ["item-1", "item-2", "item-2", "item-3", "item-4"]


def test_purge_deletes_the_instance(webhook: httpx.Client) -> None:
    """A run terminated before any worker took it is Terminated at once; once purged, its status is 404."""
    started = webhook.post("/api/start-fanout", json={"count": 1}).json()
    assert webhook.post(started["terminatePostUri"]).status_code == 202
    assert webhook.get(started["statusQueryGetUri"]).json()["runtimeStatus"] == "Terminated"
    assert webhook.delete(started["purgeHistoryDeleteUri"]).json() == {"instancesDeleted": 1}
    assert webhook.get(started["statusQueryGetUri"]).status_code == 404

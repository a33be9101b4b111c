"""The webhook against a real Prefect server, a real `process` worker and uvicorn, over real HTTP."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from fanout.core.prefect_adapter import tls_context_for
from fanout.localstack.stack import LocalStack
from fanout.service.runs import PrefectRuns
from fanout.service.webhook_errors import PrefectUnavailable
from tests.conftest import REPO_ROOT
from tests.support.processors import executed
from tests.support.stacks import SLOW_SCRIPTED, fanout_env, poll_until_finished, wait_for
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
    assert {name: body["customStatus"][name] for name in ("total", "completed", "failed")} == {
        "total": 5,
        "completed": 5,
        "failed": 0,
    }


def test_ui_url_is_the_runs_page_on_the_prefect_server(webhook: httpx.Client, stack: LocalStack) -> None:
    """`uiUrl` (given once the run exists: at once for a named instance) opens the run's page in the Prefect UI."""
    ui_url = webhook.post("/api/start-fanout", json={"instance_id": "ui-link"}).json()["uiUrl"]
    assert ui_url.startswith(f"{stack.ui_url}/runs/flow-run/")
    assert httpx.get(ui_url, headers={"Accept": "text/html"}, timeout=30).status_code == 200


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-the-token-at-all"}])
def test_without_the_right_token_the_answer_is_401(
    stack: LocalStack, prefect_api: httpx.Client, headers: dict[str, str]
) -> None:
    """No token or a wrong token: 401, and no flow run is created."""
    before = len(flow_runs(prefect_api))
    response = httpx.post(f"{stack.webhook_url}/api/start-fanout", headers=headers, timeout=30)
    assert response.status_code == 401
    assert len(flow_runs(prefect_api)) == before


def start_as_own_client(
    webhook: httpx.Client, json: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    """POST /api/start-fanout on a connection of its own, as one of many separate clients would: one
    `httpx.Client` shared by hundreds of threads can break its own pooled sockets (seen: EBADF on a read).
    The clients share one TLS context, which each would otherwise build for itself (CPU the test does not
    need: the webhook speaks plain HTTP)."""
    with httpx.Client(
        base_url=webhook.base_url,
        headers=webhook.headers,
        timeout=webhook.timeout,
        verify=tls_context_for(str(webhook.base_url)),
    ) as client:
        return client.post("/api/start-fanout", json=json, headers=headers)


def test_fifty_concurrent_posts_with_one_key_create_exactly_one_run(
    webhook: httpx.Client, prefect_api: httpx.Client
) -> None:
    """50 concurrent POSTs with one Idempotency-Key → one flow run, one instance id for all."""
    headers = {"Idempotency-Key": "e2e-one-key"}
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(
            pool.map(lambda _: start_as_own_client(webhook, json={"count": 3}, headers=headers), range(50))
        )
    assert {response.status_code for response in responses} == {202}
    ids = {response.json()["id"] for response in responses}
    assert len(ids) == 1
    (instance,) = ids
    # an unnamed start waits in the webhook's start queue until the submitter creates its run
    wait_for(lambda: webhook.get("/health").json().get("queuedStarts") == 0, timeout=120, what="start queue empty")
    runs = flow_runs(prefect_api, flow_runs={"tags": {"all_": [f"fanout.instance:{instance}"]}})
    assert len(runs) == 1


def test_the_same_key_with_another_body_is_409(webhook: httpx.Client, prefect_api: httpx.Client) -> None:
    """Reusing an Idempotency-Key with a different body is refused; only the first run exists."""
    headers = {"Idempotency-Key": "e2e-order-2"}
    assert webhook.post("/api/start-fanout", json={"count": 3}, headers=headers).status_code == 202
    wait_for(lambda: webhook.get("/health").json().get("queuedStarts") == 0, timeout=120, what="the first run created")
    before = len(flow_runs(prefect_api))
    again = webhook.post("/api/start-fanout", json={"count": 4}, headers=headers)
    assert again.status_code == 409 and "different body" in again.json()["detail"]
    assert len(flow_runs(prefect_api)) == before


RAW_HEADER_CASES = {"lying content-length", "content-length of 5,000 digits", "content-length not ascii digits"}
"""Requests whose Content-Length httpx will not send over a connection; the unit tier sends them in-process."""


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


def slow_running_instance(webhook: httpx.Client, pooled_worker: Any) -> dict[str, Any]:
    """The start answer of a 30-item instance on a worker whose items take half a second, once it is Running."""
    pooled_worker(**SLOW_SCRIPTED)
    started: dict[str, Any] = webhook.post("/api/start-fanout", json={"count": 30}).json()
    status_url = started["statusQueryGetUri"]
    wait_for(lambda: webhook.get(status_url).json()["runtimeStatus"] == "Running", what="Running")
    return started


def test_terminate_a_slow_run_reports_terminated(
    webhook: httpx.Client, pooled_worker: Any, execution_log: Path
) -> None:
    """Terminating a running instance cancels its flow run; the status then says Terminated."""
    started = slow_running_instance(webhook, pooled_worker)
    status_url = started["statusQueryGetUri"]
    assert webhook.post(started["terminatePostUri"]).status_code == 202
    done = poll_until_finished(webhook, status_url, timeout=120)
    assert done.status_code == 200 and done.json()["runtimeStatus"] == "Terminated"
    assert len(executed(execution_log)) < 30


def test_runs_terminated_as_they_start_all_end_terminated(
    webhook: httpx.Client, pooled_worker: Any, execution_log: Path
) -> None:
    """Runs terminated the moment they start (some as the worker takes them) all end Terminated, none Completed."""
    pooled_worker(**SLOW_SCRIPTED)
    status_urls = []
    for _ in range(8):
        started = webhook.post("/api/start-fanout", json={"count": 2}).json()
        assert webhook.post(started["terminatePostUri"]).status_code == 202
        status_urls.append(started["statusQueryGetUri"])
    finals = [poll_until_finished(webhook, url, timeout=120).json()["runtimeStatus"] for url in status_urls]
    assert finals == ["Terminated"] * 8


def test_terminates_sent_together_end_the_run_terminated(
    webhook: httpx.Client, pooled_worker: Any, execution_log: Path
) -> None:
    """Three terminates of one running instance sent at once: 202 each, and the run ends Terminated."""
    started = slow_running_instance(webhook, pooled_worker)
    with ThreadPoolExecutor(max_workers=3) as pool:
        codes = list(pool.map(lambda _: webhook.post(started["terminatePostUri"]).status_code, range(3)))
    assert codes == [202] * 3
    done = poll_until_finished(webhook, started["statusQueryGetUri"], timeout=120)
    assert done.status_code == 200 and done.json()["runtimeStatus"] == "Terminated"


def test_restart_after_a_permanent_failure_runs_only_the_failed_item(
    webhook: httpx.Client, start_worker: Any, stack: LocalStack, execution_log: Path
) -> None:
    """A run whose item-2 always fails ends Failed naming it; after the processor is fixed, restart runs only item-2."""
    broken = start_worker(FANOUT_TEST_FAIL="item-2")
    started = webhook.post("/api/start-fanout", json={"count": 4}).json()
    failed = poll_until_finished(webhook, started["statusQueryGetUri"]).json()
    assert failed["runtimeStatus"] == "Failed"
    assert "item-2: ValueError: item-2 is broken" in failed["output"]
    assert failed["customStatus"] == {"total": 4, "completed": 3, "failed": 1, "resuming": False, "resumes": 0}
    stack.stop_worker(broken)
    start_worker()  # the fixed processor: FANOUT_TEST_FAIL no longer set
    assert webhook.post(started["restartPostUri"]).status_code == 202
    done = poll_until_finished(webhook, started["statusQueryGetUri"]).json()
    assert done["runtimeStatus"] == "Completed"
    assert done["output"] == [f"Processed item-{i}" for i in range(1, 5)]
    assert executed(execution_log) == ["item-1", "item-2", "item-2", "item-3", "item-4"]


def test_purge_deletes_the_instance(webhook: httpx.Client) -> None:
    """A run terminated before any worker took it is Terminated at once; once purged, its status is 404."""
    started = webhook.post("/api/start-fanout", json={"count": 1}).json()
    assert webhook.post(started["terminatePostUri"]).status_code == 202
    assert webhook.get(started["statusQueryGetUri"]).json()["runtimeStatus"] == "Terminated"
    assert webhook.delete(started["purgeHistoryDeleteUri"]).json()["instancesDeleted"] == 1
    assert webhook.get(started["statusQueryGetUri"]).status_code == 404


def all_flow_runs(prefect_api: httpx.Client) -> list[dict[str, Any]]:
    """Every flow run on the server, over every page."""
    found: list[dict[str, Any]] = []
    while page := prefect_api.post("/flow_runs/filter", json={"limit": 200, "offset": len(found)}).json():
        found.extend(page)
    return found


def instance_runs(prefect_api: httpx.Client) -> dict[str, int]:
    """Flow runs per instance id."""
    found: dict[str, int] = {}
    for run in all_flow_runs(prefect_api):
        instance = (run.get("labels") or {}).get("fanout.instance")
        if instance:
            found[instance] = found.get(instance, 0) + 1
    return found


def test_a_burst_of_200_gets_202_or_429_never_5xx_and_only_accepted_starts_run(
    webhook: httpx.Client, prefect_api: httpx.Client
) -> None:
    """200 concurrent starts with distinct keys: each 202 or 429, none 5xx; each 202 has one run, no other run exists."""

    def post(index: int) -> httpx.Response:
        return start_as_own_client(webhook, json={"count": 1}, headers={"Idempotency-Key": f"e2e-burst-{index}"})

    with ThreadPoolExecutor(max_workers=200) as pool:
        responses = list(pool.map(post, range(200)))
    assert {response.status_code for response in responses} <= {202, 429}, [
        response.text for response in responses if response.status_code not in (202, 429)
    ][:3]
    accepted = {response.json()["id"] for response in responses if response.status_code == 202}
    wait_for(lambda: webhook.get("/health").json().get("queuedStarts") == 0, timeout=600, what="start queue empty")
    burst_runs = [
        run
        for run in all_flow_runs(prefect_api)
        if (run.get("idempotency_key") or "").startswith("fanout-webhook:key:e2e-burst-")
    ]
    assert sorted(run["labels"]["fanout.instance"] for run in burst_runs) == sorted(accepted)  # no orphan, no double
    assert webhook.get("/health").status_code == 200
    assert webhook.get(f"/api/instances/{next(iter(accepted))}").status_code in (200, 202)


def test_fifty_concurrent_starts_of_one_instance_create_one_run(
    webhook: httpx.Client, prefect_api: httpx.Client
) -> None:
    """50 concurrent POSTs naming one instance: one 202, 49 x 409 naming the run, one flow run in Prefect."""
    with ThreadPoolExecutor(max_workers=50) as pool:
        responses = list(pool.map(lambda _: start_as_own_client(webhook, json={"instance_id": "e2e-once"}), range(50)))
    codes = [response.status_code for response in responses]
    assert codes.count(202) == 1 and codes.count(409) == 49
    assert instance_runs(prefect_api).get("e2e-once") == 1


def test_two_concurrent_fanout_runs_of_one_instance_one_exits_2(
    stack: LocalStack, execution_log: Path, tmp_path: Path
) -> None:
    """Two `fanout run --instance-id X` at once against one server: one runs, the other exits 2 naming it, with no traceback."""
    release = tmp_path / "release"  # the running one's items wait for it, so it runs until the other has exited
    env = {**stack.client_env(), **fanout_env(), "FANOUT_TEST_HOLD_UNTIL": str(release), "FANOUT_MAX_PARALLEL": "2"}
    argv = [str(Path(sys.executable).parent / "fanout"), "run", "--count", "2", "--instance-id", "e2e-cli-once"]
    runs = [
        subprocess.Popen(argv, env=env, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    try:
        wait_for(lambda: any(run.poll() is not None for run in runs), timeout=300, what="one of the two to exit")
        release.touch()
        outcomes = sorted((run.wait(timeout=600), run.stderr.read() if run.stderr else "") for run in runs)
    finally:
        for run in runs:
            run.kill() if run.poll() is None else None
    (first_code, _), (second_code, refused) = outcomes
    assert (first_code, second_code) == (0, 2)
    assert "e2e-cli-once is already running" in refused
    assert "Traceback" not in refused


@contextmanager
def served(app: Any) -> Iterator[str]:
    """`app` under uvicorn on a free 127.0.0.1 port, from a thread: its base URL; stopped at the end, without
    waiting on requests still running, even when the test fails."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, timeout=30, interval=0.05, what="a server in a thread")
        (socket,) = server.servers[0].sockets
        yield f"http://127.0.0.1:{socket.getsockname()[1]}"
    finally:
        server.should_exit = server.force_exit = True
        thread.join(timeout=30)


class SlowPrefect:
    """A stand-in Prefect API that answers after `delay` seconds (0: at once) and counts the calls."""

    def __init__(self) -> None:
        from fastapi import FastAPI

        self.delay = 2.0
        self.calls = 0
        self.url = ""
        self.app = FastAPI()

        @self.app.post("/api/flow_runs/filter")
        async def flow_runs() -> list[object]:
            self.calls += 1
            await asyncio.sleep(self.delay)
            return []


@pytest.fixture
def slow_prefect() -> Iterator[SlowPrefect]:
    """A SlowPrefect on a real socket."""
    slow = SlowPrefect()
    with served(slow.app) as base:
        slow.url = f"{base}/api"
        yield slow


def test_after_prefect_timeouts_the_connection_pool_is_whole(slow_prefect: SlowPrefect) -> None:
    """Twenty calls that time out leave no pool slot behind: the next call, with Prefect fast again, succeeds."""
    from prefect.client.orchestration import PrefectClient

    from fanout.api.webhook import prefect_client_options
    from fanout.core.prefect_adapter import client_retries_off
    from fanout.core.settings import FanoutSettings

    settings = FanoutSettings(  # type: ignore[call-arg]
        _env_file=None, webhook_api_timeout_seconds=0.3, webhook_pool_wait_seconds=2.0, webhook_max_connections=4
    )

    async def main() -> list[object]:
        with client_retries_off():  # one attempt per call: the timeouts, not the retries, are under test
            return await calls()

    async def calls() -> list[object]:
        async with PrefectClient(slow_prefect.url, httpx_settings=prefect_client_options(settings)) as client:
            runs = PrefectRuns(client, "fan-out-fan-in/default", ui_base=None)
            outcomes: list[object] = list(
                await asyncio.gather(*(runs.latest(f"i{n}") for n in range(20)), return_exceptions=True)
            )
            slow_prefect.delay = 0
            outcomes.append(await runs.latest("after"))
            return outcomes

    *timed_out, after = asyncio.run(main())
    assert all(isinstance(outcome, PrefectUnavailable) for outcome in timed_out)
    assert after is None  # answered: the pool had its connections back


def test_a_status_request_to_a_stuck_prefect_gets_its_503_after_the_capped_retries(
    slow_prefect: SlowPrefect, tmp_path: Path
) -> None:
    """With Prefect not answering, a status request tries it 1 + FANOUT_WEBHOOK_API_RETRIES times, then 503
    with Retry-After (not Prefect's own five retries, about a minute)."""
    from fanout.api.webhook import create_app
    from fanout.core.settings import FanoutSettings

    token = "stuck-prefect-token-0123456789"
    settings = FanoutSettings(  # type: ignore[call-arg]
        _env_file=None,
        prefect_api_url=slow_prefect.url,
        webhook_token=token,
        webhook_queue_path=tmp_path / "starts.sqlite",
        webhook_api_timeout_seconds=0.3,
        webhook_api_retries=1,
    )

    with served(create_app(settings)) as webhook_url:
        answer = httpx.get(f"{webhook_url}/api/instances/i1", headers={"Authorization": f"Bearer {token}"}, timeout=60)

    assert answer.status_code == 503 and "retry-after" in answer.headers, answer.text
    assert slow_prefect.calls == 2

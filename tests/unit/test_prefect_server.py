"""The local Prefect server's one addition: SQLite's 503s say when to retry."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from fanout.localstack.prefect_server import RETRY_AFTER_CAP, RetryAfterOn503


def app_answering(status: int, headers: dict[str, str] | None = None) -> FastAPI:
    app = FastAPI()

    @app.patch("/flow_runs/x/labels")
    async def labels() -> JSONResponse:
        return JSONResponse({"exception_message": "Service Unavailable"}, status_code=status, headers=headers)

    return app


async def answer(app: FastAPI) -> httpx.Response:
    """The answer through the middleware with one attempt, so a 503 reaches the client at once (the replays
    of a 503 and their pauses are specified by the `FlakyApp` tests below)."""
    transport = httpx.ASGITransport(app=RetryAfterOn503(app, 0.1, attempts=1))
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
        return await client.patch("/flow_runs/x/labels", json={})


@pytest.mark.anyio
async def test_a_503_gets_a_short_retry_after() -> None:
    """A 503 without `Retry-After` gets the configured one, which Prefect's clients wait instead of 2 s."""
    response = await answer(app_answering(503))
    assert response.status_code == 503
    assert float(response.headers["retry-after"]) == 0.1


def test_many_503s_at_once_spread_their_retries() -> None:
    """When 503s come in numbers, their waits spread over up to the cap instead of all being 0.1 s."""
    middleware = RetryAfterOn503(app_answering(503), 0.1, clock=lambda: 100.0)
    waits = [middleware.wait() for _ in range(200)]
    assert min(waits) >= 0.1 and max(waits) <= RETRY_AFTER_CAP
    assert max(waits) > 1.0


def test_the_wait_is_short_again_once_the_503s_stop() -> None:
    """503s older than a couple of seconds no longer lengthen the wait."""
    now = [100.0]
    middleware = RetryAfterOn503(app_answering(503), 0.1, clock=lambda: now[0])
    for _ in range(50):
        middleware.wait()
    now[0] += 10
    assert middleware.wait() == 0.1


@pytest.mark.anyio
async def test_a_503_keeps_its_own_retry_after() -> None:
    """A 503 that already says when to retry is left as it is."""
    response = await answer(app_answering(503, {"Retry-After": "5"}))
    assert response.headers.get_list("retry-after") == ["5"]


@pytest.mark.anyio
async def test_other_answers_are_untouched() -> None:
    """Only 503s change."""
    response = await answer(app_answering(200))
    assert "retry-after" not in response.headers


def test_prefect_clients_wait_what_retry_after_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's client waits `Retry-After: 0.1` before retrying a 503, not its own 2 s (else the header is moot)."""
    from prefect.client import base

    waits: list[float] = []
    monkeypatch.setattr(base.time, "sleep", waits.append)
    answers = iter([httpx.Response(503, headers={"Retry-After": "0.1"}), httpx.Response(200)])
    transport = httpx.MockTransport(lambda request: next(answers))
    with base.PrefectHttpxSyncClient(transport=transport, base_url="http://server") as client:
        assert client.get("/health").status_code == 200
    assert len(waits) == 1 and waits[0] < 0.5


class FlakyApp:
    """Answers 503 (and raises afterwards, as Starlette does for a handled error) `failures` times, then
    echoes the body it got with 201."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        assert scope["path"] == "/flow_runs/x/labels", scope["path"]  # each attempt routes the same request
        scope["path"] = "/rewritten-by-routing"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        if self.calls <= self.failures:
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b'{"exception_message": "Service Unavailable"}'})
            raise RuntimeError("database is locked")
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": body})


async def patch_labels(app: Any) -> httpx.Response:
    transport = httpx.ASGITransport(app=RetryAfterOn503(app, 0.1, attempts=4))
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
        return await client.patch("/flow_runs/x/labels", json={"fanout.completed": 3})


@pytest.mark.anyio
async def test_a_request_answered_503_is_run_again_with_its_body() -> None:
    """A write that lost a race is run again in the server: the client sees the answer of the attempt that won."""
    app = FlakyApp(failures=2)
    response = await patch_labels(app)
    assert response.status_code == 201 and response.json() == {"fanout.completed": 3}
    assert app.calls == 3


@pytest.mark.anyio
async def test_a_503_that_keeps_coming_reaches_the_client_with_retry_after() -> None:
    """After its last attempt the server answers the 503, saying when to retry."""
    app = FlakyApp(failures=10)
    with pytest.raises(RuntimeError):  # the last attempt's error is raised as Prefect's app raises it
        await patch_labels(app)
    assert app.calls == 4


def test_the_requests_that_read_before_they_write_are_the_ones_that_lock_at_once() -> None:
    """Creating a run, the labels update and the lease take the write lock at once; reads and others do not."""
    from fanout.localstack.prefect_server import takes_write_lock_at_once

    def locks(method: str, path: str) -> bool:
        return takes_write_lock_at_once({"method": method, "path": path})

    assert locks("POST", "/api/deployments/0b0b/create_flow_run")
    assert locks("PATCH", "/api/flow_runs/0b0b/labels")
    assert locks("POST", "/api/v2/concurrency_limits/increment-with-lease")
    assert not locks("GET", "/api/flow_runs/0b0b/labels") and not locks("POST", "/api/flow_runs/filter")


@pytest.mark.anyio
async def test_each_attempt_of_such_a_request_sets_the_flag_its_transaction_reads() -> None:
    """The flag is set for every attempt of a locking request, so a replayed one locks at once too."""
    from contextvars import ContextVar

    flag: ContextVar[bool] = ContextVar("flag", default=False)
    seen: list[bool] = []
    app = FastAPI()

    @app.patch("/api/flow_runs/x/labels")
    async def labels() -> JSONResponse:
        seen.append(flag.get())
        return JSONResponse({}, status_code=503 if len(seen) == 1 else 204)

    transport = httpx.ASGITransport(app=RetryAfterOn503(app, 0.1, write_lock_flag=flag))
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
        response = await client.patch("/api/flow_runs/x/labels", json={})
    assert response.status_code == 204 and seen == [True, True]


def test_the_local_server_records_task_runs_in_batches() -> None:
    """Unless told otherwise, the local server's task-run recorder writes a second's task-run states at once."""
    from fanout.localstack.prefect_server import with_server_defaults

    environ: dict[str, str] = {}
    with_server_defaults(environ)
    assert environ["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "100"
    assert environ["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL"] == "1"


def test_the_local_server_marks_a_waiting_run_late_after_minutes_not_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unless told otherwise, a run the local server's late-runs service marks Late has waited five minutes,
    in a form this Prefect's settings accept."""
    from datetime import timedelta

    from prefect.settings import Settings

    from fanout.localstack.prefect_server import with_server_defaults

    environ: dict[str, str] = {}
    with_server_defaults(environ)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert Settings().server.services.late_runs.after_seconds == timedelta(minutes=5)


def test_a_recorder_setting_in_the_environment_is_kept() -> None:
    """A user's own Prefect setting wins over the local server's default."""
    from fanout.localstack.prefect_server import with_server_defaults

    environ = {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "1"}
    with_server_defaults(environ)
    assert environ["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "1"

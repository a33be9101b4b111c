"""The local Prefect server's one addition: SQLite's 503s say when to retry."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from deployments.prefect_server import RetryAfterOn503


def app_answering(status: int, headers: dict[str, str] | None = None) -> FastAPI:
    app = FastAPI()

    @app.patch("/flow_runs/x/labels")
    async def labels() -> JSONResponse:
        return JSONResponse({"exception_message": "Service Unavailable"}, status_code=status, headers=headers)

    return app


async def answer(app: FastAPI) -> httpx.Response:
    transport = httpx.ASGITransport(app=RetryAfterOn503(app, 0.1))
    async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
        return await client.patch("/flow_runs/x/labels", json={})


@pytest.mark.anyio
async def test_a_503_gets_a_short_retry_after() -> None:
    """A 503 without `Retry-After` gets the configured one, which Prefect's clients wait instead of 2 s."""
    response = await answer(app_answering(503))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "0.1"


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

"""Calling the webhook app in-process over `httpx.ASGITransport`: no port, no server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI

from fanout.api.deps import WebhookState
from fanout.api.webhook import create_app
from fanout.core.settings import FanoutSettings
from tests.support.fake_runs import FakeRuns

TOKEN = "unit-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = "http://webhook.test"

T = TypeVar("T")


_APPS: dict[tuple[int, float], FastAPI] = {}
"""Apps by the settings their middleware takes. FastAPI builds an app's routes on its first request, which
costs far more than a test's own requests; the routes do not depend on the settings, and everything that
does is the app's state (`app.state.webhook`), so a test gets a shared app with a state of its own."""


def make_app(runs: FakeRuns, **settings: Any) -> FastAPI:
    """The webhook app over `runs`, with a token unless the test says otherwise."""
    fields: dict[str, Any] = {"webhook_token": TOKEN, **settings}
    fresh = create_app(FanoutSettings(_env_file=None, **fields), runs=runs)  # type: ignore[call-arg]
    state: WebhookState = fresh.state.webhook
    key = (state.settings.webhook_api_retries, state.settings.webhook_read_deadline_seconds)
    app = _APPS.setdefault(key, fresh)
    app.state.webhook = state
    return app


def with_client(app: FastAPI, use: Callable[[httpx.AsyncClient], Awaitable[T]]) -> T:
    """Run `use(client)` against the app in a fresh event loop, then let its submitter create
    the runs of the starts it queued (as the running app's submitter would, moments later)."""

    async def main() -> T:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=10) as client:
            result = await use(client)
        await submit_queued(app)
        return result

    return asyncio.run(main())


async def submit_queued(app: FastAPI) -> None:
    """Create the runs of every queued start now."""
    state: WebhookState = app.state.webhook
    assert state.instances is not None
    await state.instances.submitter.drain()


def call(app: FastAPI, method: str, url: str, **options: Any) -> httpx.Response:
    """One request to the app; the bearer token is sent unless `headers` are given."""
    options.setdefault("headers", AUTH)
    return with_client(app, lambda client: client.request(method, url, **options))

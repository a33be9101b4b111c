"""With Prefect frozen (connections taken, nothing answered), the webhook still answers quickly, with why."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from fanout.api.webhook import create_app
from fanout.core.settings import FanoutSettings
from tests.support.frozen_server import frozen_server
from tests.support.webhook_client import AUTH, BASE, TOKEN

CLIENT_PATIENCE = httpx.Timeout(5.0)
"""Well under the minute a frozen Prefect used to hold a request: a hang fails the test instead."""
BUDGET = 0.2
"""The read budget and health timeout the tests set: far below the client's patience and the Prefect API
timeout (15 s), so an answer at all shows the budget, not a timeout of its own, ended the wait."""


def against_frozen_prefect(tmp_path: Path, use: Callable[[httpx.AsyncClient], Awaitable[Any]], **fields: Any) -> Any:
    """Run `use(client)` against the real app, connected (lifespan and all) to a Prefect that never answers."""
    with frozen_server() as prefect_url:
        settings = FanoutSettings(  # type: ignore[call-arg]
            _env_file=None,
            prefect_api_url=f"{prefect_url}/api",
            webhook_token=TOKEN,
            webhook_queue_path=tmp_path / "starts.sqlite",
            **fields,
        )
        app = create_app(settings)

        async def main() -> Any:
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url=BASE, timeout=CLIENT_PATIENCE) as client:
                    return await use(client)

        return asyncio.run(main())


def test_health_is_503_with_the_reason_when_prefect_is_frozen(tmp_path: Path) -> None:
    """`/health` gives up on a frozen Prefect after its own timeout and says so, instead of waiting on it."""
    answer = against_frozen_prefect(
        tmp_path, lambda client: client.get("/health"), webhook_health_timeout_seconds=BUDGET
    )
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"
    assert "did not answer in time" in answer.json()["detail"]


def test_a_status_request_to_a_frozen_prefect_is_503_within_its_budget(tmp_path: Path) -> None:
    """A status GET spends at most its read budget on a frozen Prefect, then answers 503 with Retry-After."""
    answer = against_frozen_prefect(
        tmp_path,
        lambda client: client.get("/api/instances/frozen-1", headers=AUTH),
        webhook_read_deadline_seconds=BUDGET,
        webhook_api_retries=2,
    )
    assert answer.status_code == 503, answer.text
    assert "retry-after" in answer.headers


def test_a_list_on_the_durable_routes_is_bounded_too(tmp_path: Path) -> None:
    """The Durable Functions list, a GET, gets the same bound and the same 503."""
    answer = against_frozen_prefect(
        tmp_path,
        lambda client: client.get("/runtime/webhooks/durabletask/instances", headers=AUTH),
        webhook_read_deadline_seconds=BUDGET,
        webhook_api_retries=0,  # the status test above covers retries within the budget
    )
    assert answer.status_code == 503, answer.text

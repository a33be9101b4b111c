"""The seed's HTTP starter: `POST /api/start-fanout` starts the deployed flow and answers 202 with status URLs.

It never runs flow code: it creates flow runs of the deployment through the
Prefect API and reads them back. This module builds the app: the routes
(src/fanout/api/routes.py), their dependencies (src/fanout/api/deps.py), the
operations they call (src/fanout/service/instances.py) and, while the app runs, the
connection to Prefect and the submitter that turns queued starts into runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from fanout.api.deadline import bounded, within_deadline
from fanout.api.deps import WebhookState
from fanout.api.docs_routes import router as docs_routes
from fanout.api.durable_api import router as durable_routes
from fanout.api.results_routes import router as results_routes
from fanout.api.routes import open_routes, routes
from fanout.api.state_changes import prefect_subscription
from fanout.core.prefect_adapter import client_retries
from fanout.core.settings import ApiSettings
from fanout.service.instances import Instances
from fanout.service.resuming import ResumePolicy
from fanout.service.runs import PrefectRuns, Runs
from fanout.service.start_queue import StartQueue
from fanout.service.submitter import Submitter
from fanout.service.webhook_errors import PrefectUnavailable, WebhookError
from fanout.storage.checkpoints import result_storage

if TYPE_CHECKING:
    from prefect.context import SettingsContext
    from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

QUEUE_FILE = "fanout-webhook-starts.sqlite"


class WebhookConfigurationError(RuntimeError):
    """The webhook cannot start as configured (say, no token and anonymous access not allowed)."""


def create_app(settings: ApiSettings, runs: Runs | None = None) -> FastAPI:
    """The ASGI app; with `runs=None` it connects to the Prefect API named by the settings while it runs.

    With `runs` given (tests), its operations work at once over an in-memory start queue.
    """
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    if token is None and not settings.webhook_allow_anonymous:
        raise WebhookConfigurationError(
            "set FANOUT_WEBHOOK_TOKEN (16+ characters), or FANOUT_WEBHOOK_ALLOW_ANONYMOUS=true for development"
        )
    state = WebhookState(settings=settings, token=token)
    if runs is not None:
        state.instances = instances_over(runs, StartQueue(":memory:", settings.webhook_max_queued_starts), settings)
    app = FastAPI(
        title="fanout webhook",
        lifespan=_prefect_lifespan if runs is None else None,
        docs_url=None,  # served behind the token instead (src/fanout/api/docs_routes.py)
        redoc_url=None,
        openapi_url=None,
    )
    app.state.webhook = state
    app.include_router(open_routes)
    app.include_router(routes)
    app.include_router(durable_routes)  # Durable Functions' HTTP API, over the same operations
    app.include_router(results_routes)  # GET /api/instances/{id}/results (src/fanout/api/results_routes.py)
    app.include_router(docs_routes)  # /docs, /redoc, /openapi.json, behind the token
    app.add_exception_handler(WebhookError, _webhook_error)
    app.add_middleware(
        CappedPrefectRetries,
        retries=settings.webhook_api_retries,
        read_deadline_seconds=settings.webhook_read_deadline_seconds,
    )
    return app


class CappedPrefectRetries:
    """ASGI middleware: the Prefect API calls made while answering a request retry at most `retries` times.

    Prefect's client retries a failed call five times, backing off up to 32 s: with
    Prefect stuck, a status request would wait about a minute for its 503. Capped, the
    client gets its 503 (and `Retry-After`) in seconds and asks again. A GET's calls
    also share one time budget, `read_deadline_seconds` (src/fanout/api/deadline.py),
    since each capped retry still waits a whole timeout on a frozen Prefect. The start
    queue's submitter runs outside any request and keeps Prefect's retries.
    """

    def __init__(self, app: ASGIApp, retries: int, read_deadline_seconds: float) -> None:
        self.app = app
        self.capped: SettingsContext = client_retries(retries)
        self.read_deadline_seconds = read_deadline_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with self.capped.model_copy():  # a context of its own per request: entering one records its token
            if scope["method"] in ("GET", "HEAD"):  # reads are bounded as a whole (src/fanout/api/deadline.py)
                with bounded(self.read_deadline_seconds):
                    await self.app(scope, receive, send)
                return
            await self.app(scope, receive, send)


def instances_over(runs: Runs, queue: StartQueue, settings: ApiSettings) -> Instances:
    """The operations over `runs`, with a submitter draining `queue` into them."""
    submitter = Submitter(queue, runs, settings.webhook_submit_concurrency, default_deployment=settings.deployment_name)
    flow_name = settings.deployment_name.split("/")[0]
    return Instances(
        runs, queue, submitter, flow_name, ResumePolicy.from_settings(settings), lambda: result_storage(settings)
    )


def prefect_client_options(settings: ApiSettings) -> dict[str, Any]:
    """httpx's own timeouts bound every call, including the wait for a pooled connection:
    nothing is cancelled from outside, so no pool slot can leak. A request's budget, when it
    has one, trims them further (src/fanout/api/deadline.py)."""
    timeout = settings.webhook_api_timeout_seconds
    return {
        "timeout": httpx.Timeout(timeout, pool=settings.webhook_pool_wait_seconds),
        "event_hooks": {"request": [within_deadline]},
        "limits": httpx.Limits(
            max_connections=settings.webhook_max_connections,
            max_keepalive_connections=settings.webhook_max_connections,
        ),
    }


def queue_path(settings: ApiSettings) -> Path:
    from prefect.settings import PREFECT_HOME

    return settings.webhook_queue_path or Path(PREFECT_HOME.value()) / QUEUE_FILE


@asynccontextmanager
async def _prefect_lifespan(app: FastAPI) -> AsyncIterator[None]:
    from prefect.client.orchestration import PrefectClient
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

    state: WebhookState = app.state.webhook
    settings = state.settings
    api_url = settings.prefect_api_url or PREFECT_API_URL.value()
    if not api_url:
        raise WebhookConfigurationError("no Prefect API: set FANOUT_PREFECT_API_URL or PREFECT_API_URL")
    queue = StartQueue(queue_path(settings), settings.webhook_max_queued_starts, settings.webhook_retry_after_seconds)
    async with PrefectClient(
        api_url,
        auth_string=PREFECT_API_AUTH_STRING.value() or None,  # a server with API auth needs it
        httpx_settings=prefect_client_options(settings),
    ) as client:
        runs = PrefectRuns(client, settings.deployment_name, ui_base=api_url.removesuffix("/api"), settings=settings)
        state.instances = instances_over(runs, queue, settings)
        submitting = asyncio.create_task(state.instances.submitter.run_forever(), name="fanout-submitter")
        listening = asyncio.create_task(state.changes.listen(prefect_subscription(api_url)), name="fanout-changes")
        try:
            yield
        finally:
            submitting.cancel()  # a create cut off here stays queued and is sent again (same idempotency key)
            listening.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await submitting
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            state.instances = None
            queue.close()


async def _webhook_error(request: Request, error: Exception) -> JSONResponse:
    """An operation's error as its HTTP answer, with `detail` saying why."""
    assert isinstance(error, WebhookError)
    if isinstance(error, PrefectUnavailable):
        logger.warning("Prefect API call failed: %s (%r)", error, error.__cause__)
    return JSONResponse({"detail": str(error)}, status_code=error.status_code, headers=error.headers)


def app_from_environment() -> FastAPI:
    """`uvicorn --factory fanout.api.webhook:app_from_environment`: settings from FANOUT_* now."""
    from fanout.core.settings import api_settings

    return create_app(api_settings())

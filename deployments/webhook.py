"""The seed's HTTP starter: `POST /api/start-fanout` starts the deployed flow and answers 202 with status URLs.

It never runs flow code: it creates flow runs of the deployment through the
Prefect API and reads them back. Routes (all but /health need
`Authorization: Bearer <FANOUT_WEBHOOK_TOKEN>`):

    POST   /api/start-fanout                 202 + management URLs
    GET    /api/instances/{id}               status: 202 while running, 200 when finished, 404 unknown
    POST   /api/instances/{id}/terminate     cancel the run (-> Terminated)
    POST   /api/instances/{id}/restart       run the same instance again, reusing its checkpoints
    DELETE /api/instances/{id}               purge its history (status then 404)
    GET    /health                           liveness, no token
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from deployments.body import parse_request, read_limited
from deployments.idempotency import BadIdempotencyKey, StartsByKey, checked_key, request_digest
from deployments.runs import PrefectRuns, RunRecord, Runs
from deployments.status import (
    FINISHED, StatusDocument, custom_status, requested_total, runtime_status, settled_failures,
)
from flows.request import INSTANCE_ID_PATTERN
from flows.settings import FanoutSettings

logger = logging.getLogger(__name__)

INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)


class WebhookConfigurationError(RuntimeError):
    """The webhook cannot start as configured (say, no token and anonymous access not allowed)."""


def create_app(settings: FanoutSettings, runs: Runs | None = None) -> FastAPI:
    """The ASGI app; with `runs=None` it talks to the Prefect API named by the settings."""
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    if token is None and not settings.webhook_allow_anonymous:
        raise WebhookConfigurationError(
            "set FANOUT_WEBHOOK_TOKEN (16+ characters), or FANOUT_WEBHOOK_ALLOW_ANONYMOUS=true for development"
        )
    app = FastAPI(title="fanout webhook", lifespan=_prefect_lifespan(settings) if runs is None else None)
    app.state.runs = runs
    app.state.settings = settings
    app.state.token = token
    app.state.starts = StartsByKey[RunRecord]()
    _add_routes(app)
    from deployments.durable_api import router as durable_router  # imports this module: not at the top

    app.include_router(durable_router)  # Durable Functions' HTTP API (deployments/durable_api.py)
    app.add_exception_handler(httpx.HTTPError, _prefect_unavailable)
    app.add_exception_handler(PrefectHTTPStatusError, _prefect_unavailable)
    app.add_exception_handler(TimeoutError, _prefect_unavailable)
    return app


def prefect_deadline(request: Request) -> asyncio.Timeout:
    """The whole Prefect side of one webhook request must finish in time (the client's own retries
    would otherwise hold a request for minutes when the server is overloaded): else 503 + Retry-After."""
    settings: FanoutSettings = request.app.state.settings
    return asyncio.timeout(settings.webhook_api_timeout_seconds)


def _prefect_lifespan(settings: FanoutSettings) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from prefect.client.orchestration import PrefectClient
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL

        api_url = settings.prefect_api_url or PREFECT_API_URL.value()
        if not api_url:
            raise WebhookConfigurationError("no Prefect API: set FANOUT_PREFECT_API_URL or PREFECT_API_URL")
        timeout = settings.webhook_api_timeout_seconds
        async with PrefectClient(
            api_url, auth_string=PREFECT_API_AUTH_STRING.value() or None,  # a server with API auth needs it
            httpx_settings={"timeout": httpx.Timeout(timeout)},
        ) as client:
            app.state.runs = PrefectRuns(client, settings.deployment_name, ui_base=api_url.removesuffix("/api"))
            yield

    return lifespan


async def _prefect_unavailable(request: Request, error: Exception) -> JSONResponse:
    """The Prefect API failed or timed out: 503, and the client may retry."""
    logger.warning("Prefect API call failed: %r", error)
    reason = str(error) or f"no answer within {request.app.state.settings.webhook_api_timeout_seconds}s"
    return JSONResponse({"detail": f"Prefect API unavailable: {reason}"}, status_code=503, headers={"Retry-After": "5"})


def require_token(request: Request, authorization: Annotated[str | None, Header()] = None) -> None:
    """401 unless the request carries the configured bearer token (compared in constant time)."""
    expected: str | None = request.app.state.token
    if expected is None:
        return
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), expected.encode()):
        raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})


def _runs(request: Request) -> Runs:
    runs: Runs | None = request.app.state.runs
    if runs is None:
        raise HTTPException(503, "not connected to Prefect yet")
    return runs


def _base_url(request: Request) -> str:
    settings: FanoutSettings = request.app.state.settings
    return (settings.webhook_public_url or str(request.base_url)).rstrip("/")


def management_urls(request: Request, runs: Runs, run: RunRecord) -> dict[str, Any]:
    """The seed's management payload for one instance."""
    status = f"{_base_url(request)}/api/instances/{run.instance_id}"
    return {
        "id": run.instance_id,
        "statusQueryGetUri": status,
        "terminatePostUri": f"{status}/terminate",
        "restartPostUri": f"{status}/restart",
        "purgeHistoryDeleteUri": status,
        "uiUrl": runs.ui_url(run),
    }


def _accepted(request: Request, runs: Runs, run: RunRecord) -> JSONResponse:
    body = management_urls(request, runs, run)
    return JSONResponse(body, status_code=202, headers=_poll_headers(request, body["statusQueryGetUri"]))


def _poll_headers(request: Request, location: str) -> dict[str, str]:
    settings: FanoutSettings = request.app.state.settings
    return {"Location": location, "Retry-After": str(settings.webhook_retry_after_seconds)}


async def _instance(request: Request, instance_id: str) -> RunRecord:
    """The instance's latest run, or 404."""
    if not INSTANCE_ID.match(instance_id):
        raise HTTPException(404, f"no instance {instance_id!r}")
    run = await _runs(request).latest(instance_id)
    if run is None:
        raise HTTPException(404, f"no instance {instance_id!r}")
    return run


def _require_finished(run: RunRecord, instance_id: str) -> None:
    """Restart and purge act only on a finished instance; otherwise 409 with its current status."""
    if not _is_finished(run):
        raise HTTPException(409, f"instance {instance_id} is still {runtime_status(run.state_type).value}")


def _is_finished(run: RunRecord) -> bool:
    return runtime_status(run.state_type) in FINISHED


def _add_routes(app: FastAPI) -> None:
    auth = [Depends(require_token)]

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/start-fanout", dependencies=auth, status_code=202)
    async def start_fanout(request: Request, idempotency_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        settings: FanoutSettings = request.app.state.settings
        try:
            key = checked_key(idempotency_key)
        except BadIdempotencyKey as error:
            raise HTTPException(400, str(error)) from None
        body = await read_limited(request, settings.webhook_max_body_bytes)
        fanout_request = parse_request(body, request.headers.get("content-type"), settings.max_items)
        runs = _runs(request)
        async with prefect_deadline(request):
            run = await start_instance(runs, fanout_request, key, request.app.state.starts)
        return _accepted(request, runs, run)

    @app.get("/api/instances/{instance_id}", dependencies=auth)
    async def status(request: Request, instance_id: str) -> JSONResponse:
        flow_name = request.app.state.settings.deployment_name.split("/")[0]
        async with prefect_deadline(request):
            run = await _instance(request, instance_id)
            document = await status_document(_runs(request), run, flow_name)
        content = document.model_dump(mode="json", by_alias=True)
        if document.finished:
            return JSONResponse(content, status_code=200)
        return JSONResponse(content, status_code=202, headers=_poll_headers(request, str(request.url)))

    @app.post("/api/instances/{instance_id}/terminate", dependencies=auth)
    async def terminate(request: Request, instance_id: str) -> JSONResponse:
        async with prefect_deadline(request):
            run = await _instance(request, instance_id)
            if _is_finished(run):
                raise HTTPException(409, f"instance {instance_id} already finished ({runtime_status(run.state_type).value})")
            await _runs(request).terminate(run)
        return _accepted(request, _runs(request), run)

    @app.post("/api/instances/{instance_id}/restart", dependencies=auth)
    async def restart(request: Request, instance_id: str) -> JSONResponse:
        async with prefect_deadline(request):
            run = await _instance(request, instance_id)
            _require_finished(run, instance_id)
            await _runs(request).restart(run)
        return _accepted(request, _runs(request), run)

    @app.delete("/api/instances/{instance_id}", dependencies=auth)
    async def purge(request: Request, instance_id: str) -> JSONResponse:
        async with prefect_deadline(request):
            run = await _instance(request, instance_id)
            _require_finished(run, instance_id)
            deleted = await _runs(request).purge(instance_id)
        return JSONResponse({"instancesDeleted": deleted}, status_code=200)


async def start_instance(runs: Runs, request: Any, key: str | None, starts: StartsByKey[RunRecord]) -> RunRecord:
    """Start one run of the request, honouring the Idempotency-Key and a busy instance id."""
    digest = request_digest(request)
    if key is None:
        return await _start_new(runs, request, digest, None)
    run = await starts.start(key, lambda: _start_keyed(runs, request, digest, key))
    return _same_body(run, digest, key)


async def _start_keyed(runs: Runs, request: Any, digest: str, key: str) -> RunRecord:
    """The run that already carries `key`, else a new one (Prefect's idempotency key keeps it one)."""
    existing = await runs.by_idempotency_key(key)
    if existing is not None:
        return existing
    return await _start_new(runs, request, digest, key)


async def _start_new(runs: Runs, request: Any, digest: str, key: str | None) -> RunRecord:
    if request.instance_id is not None:
        latest = await runs.latest(request.instance_id)
        if latest is not None and not _is_finished(latest):
            raise HTTPException(409, f"instance {request.instance_id} is already {runtime_status(latest.state_type).value}")
    instance_id = request.instance_id or uuid.uuid4().hex
    try:
        return await runs.start(request.model_copy(update={"instance_id": instance_id}), digest, key)
    except ObjectNotFound:
        raise HTTPException(503, "the fanout deployment is not registered on the Prefect server") from None


def _same_body(run: RunRecord, digest: str, key: str) -> RunRecord:
    if run.request_digest != digest:
        raise HTTPException(409, f"Idempotency-Key {key!r} was already used with a different body")
    return run


async def status_document(runs: Runs, run: RunRecord, name: str) -> StatusDocument:
    """The seed's status fields for the instance's latest run."""
    status = runtime_status(run.state_type)
    output: Any = None
    if status.value == "Completed":
        try:
            output = await runs.output(run)
        except Exception as error:  # noqa: BLE001 - status still answers; the output is unreadable here
            logger.warning("cannot read the output of %s: %s", run.flow_run_id, error)
    elif status in FINISHED:
        output = run.state_message
    failures = await _failures(runs, run) if status in FINISHED else None
    return StatusDocument(
        name=name,
        instance_id=run.instance_id,
        runtime_status=status,
        input=dict(run.parameters.get("request") or {}),
        output=output,
        custom_status=custom_status(
            run.labels, requested_total(run.parameters), settled_failures(run.state_type, failures)
        ),
        failures=failures or [],
        created_time=run.created,
        last_updated_time=run.updated,
    )


async def _failures(runs: Runs, run: RunRecord) -> list[dict[str, Any]] | None:
    """The finished run's failed items; None when it has no report or it cannot be read (logged)."""
    try:
        return await runs.failures(run)
    except Exception as error:  # noqa: BLE001 - status still answers without the report
        logger.warning("cannot read the item report of %s: %s", run.flow_run_id, error)
        return None


def app_from_environment() -> FastAPI:
    """`uvicorn --factory deployments.webhook:app_from_environment`: settings from FANOUT_* now."""
    from flows.settings import get_settings

    return create_app(get_settings())

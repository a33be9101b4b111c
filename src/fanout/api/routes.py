"""The seed's HTTP routes: plain functions on an `APIRouter`, each a thin map from HTTP to one
operation of `src/fanout/service/instances.py` and back.

    POST   /api/start-fanout                 202 + management URLs (429 when the start queue is full)
    POST   /api/start-fanout/{deployment}    the same for another deployment of the flow (404 if unknown)
    GET    /api/instances?runtimeStatus=&createdTimeFrom=&createdTimeTo=&top=&continuationToken=
                                             200 [status without output...], newest first;
                                             x-ms-continuation-token names the next page (src/fanout/api/listing.py)
    GET    /api/instances/{id}               status: 202 while running, 200 when finished, 404 unknown
    POST   /api/instances/{id}/terminate     cancel the run (-> Terminated)
    POST   /api/instances/{id}/restart       run the same instance again, reusing its checkpoints
    DELETE /api/instances/{id}               purge its runs, artifacts and checkpoints; 200 with what went

`{id}` is an instance id or a flow-run id (a run started any other way).
    GET    /health                           200 when Prefect answers in time, else 503; no token
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi.responses import JSONResponse

from fanout.api.body import parse_request, read_limited
from fanout.api.deadline import bounded
from fanout.api.deps import InstancesDep, Settings, State, require_token
from fanout.api.durable_payloads import list_entry
from fanout.api.listing import CONTINUATION_HEADER, BadQuery, list_instances
from fanout.api.openapi_doc import LIST_QUERY, START_BODY
from fanout.api.results_routes import inline_limited
from fanout.core.prefect_adapter import client_retries_off
from fanout.core.settings import FanoutSettings
from fanout.inputs.request import INSTANCE_ID_PATTERN
from fanout.service.idempotency import BadIdempotencyKey, checked_key
from fanout.service.instances import Started
from fanout.service.webhook_errors import InstanceNotFound

INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)

open_routes = APIRouter()
routes = APIRouter(dependencies=[Depends(require_token)])


@open_routes.get("/health")
async def health(state: State) -> JSONResponse:
    """200 when the webhook can reach Prefect, 503 (with why) when it cannot, within
    `FANOUT_WEBHOOK_HEALTH_TIMEOUT_SECONDS` either way: a supervisor with a short timeout can act on it."""
    if state.instances is None:
        return JSONResponse({"status": "starting", "detail": "not connected to Prefect yet"}, status_code=503)
    with client_retries_off(), bounded(state.settings.webhook_health_timeout_seconds):
        problem = await state.instances.runs.reachable()
    queued = state.instances.queue.queued_count()
    if problem is not None:
        return JSONResponse({"status": "unavailable", "detail": problem, "queuedStarts": queued}, status_code=503)
    return JSONResponse({"status": "ok", "queuedStarts": queued})


@routes.post("/api/start-fanout", status_code=202, openapi_extra=START_BODY)
async def start_fanout(
    request: Request,
    instances: InstancesDep,
    settings: Settings,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    return await start(request, instances, settings, idempotency_key, deployment=None)


@routes.post("/api/start-fanout/{deployment}", status_code=202, openapi_extra=START_BODY)
async def start_deployment(
    request: Request,
    deployment: str,
    instances: InstancesDep,
    settings: Settings,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    return await start(request, instances, settings, idempotency_key, deployment)


async def start(
    request: Request,
    instances: InstancesDep,
    settings: FanoutSettings,
    idempotency_key: str | None,
    deployment: str | None,
) -> JSONResponse:
    """Start `deployment` of the flow (the default when None): 202 with the management URLs."""
    try:
        key = checked_key(idempotency_key)
    except BadIdempotencyKey as error:
        raise HTTPException(400, str(error)) from None
    body = await read_limited(request, settings.webhook_max_body_bytes)
    admitted = await instances.admission_settings(deployment, settings)
    fanout_request = parse_request(
        body, request.headers.get("content-type"), admitted, settings.webhook_max_parameter_bytes
    )
    return accepted(request, settings, await instances.start(fanout_request, key, deployment))


@routes.get("/api/instances", openapi_extra=LIST_QUERY)
async def list_all(
    request: Request,
    instances: InstancesDep,
    continuation: Annotated[str | None, Header(alias=CONTINUATION_HEADER)] = None,
) -> JSONResponse:
    """Instances by runtimeStatus and creation time, newest first, `top` per page: Durable Functions' list."""
    try:
        listed = await list_instances(instances, request.query_params, continuation)
    except BadQuery as error:
        raise HTTPException(400, str(error)) from None
    entries = [list_entry(run, status, True, instances.flow_name) for run, status in listed.entries]
    return JSONResponse(entries, headers=listed.headers)


@routes.get("/api/instances/{instance_id}")
async def status(request: Request, instance_id: str, instances: InstancesDep, settings: Settings) -> JSONResponse:
    document = await instances.status(checked_instance(instance_id))
    content = inline_limited(document.model_dump(mode="json", by_alias=True), request, settings)
    if document.finished:
        return JSONResponse(content, status_code=200)
    return JSONResponse(content, status_code=202, headers=poll_headers(settings, str(request.url)))


@routes.post("/api/instances/{instance_id}/terminate")
async def terminate(request: Request, instance_id: str, instances: InstancesDep, settings: Settings) -> JSONResponse:
    return accepted(request, settings, await instances.terminate(checked_instance(instance_id)))


@routes.post("/api/instances/{instance_id}/restart")
async def restart(request: Request, instance_id: str, instances: InstancesDep, settings: Settings) -> JSONResponse:
    return accepted(request, settings, await instances.restart(checked_instance(instance_id)))


@routes.delete("/api/instances/{instance_id}")
async def purge(instance_id: str, instances: InstancesDep) -> JSONResponse:
    report = await instances.purge(checked_instance(instance_id))
    return JSONResponse(report.document(), status_code=200)


def checked_instance(instance_id: str) -> str:
    """An id that could name an instance, else 404 before any lookup."""
    if not INSTANCE_ID.match(instance_id):
        raise InstanceNotFound(f"no instance {instance_id!r}")
    return instance_id


def management_urls(request: Request, settings: FanoutSettings, started: Started) -> dict[str, Any]:
    """The seed's management payload for one instance (`uiUrl` is null until its run exists)."""
    base = (settings.webhook_public_url or str(request.base_url)).rstrip("/")
    status_url = f"{base}/api/instances/{started.instance_id}"
    return {
        "id": started.instance_id,
        "statusQueryGetUri": status_url,
        "terminatePostUri": f"{status_url}/terminate",
        "restartPostUri": f"{status_url}/restart",
        "purgeHistoryDeleteUri": status_url,
        "uiUrl": started.ui_url,
    }


def accepted(request: Request, settings: FanoutSettings, started: Started) -> JSONResponse:
    body = management_urls(request, settings, started)
    return JSONResponse(body, status_code=202, headers=poll_headers(settings, body["statusQueryGetUri"]))


def poll_headers(settings: FanoutSettings, location: str) -> dict[str, str]:
    return {"Location": location, "Retry-After": str(settings.webhook_retry_after_seconds)}

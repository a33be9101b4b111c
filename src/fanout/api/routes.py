"""The seed's HTTP routes under `/api/`: each a thin map from HTTP to one operation of
src/fanout/service/instances.py and back.

Start (`POST /api/start-fanout[/{deployment}]`), list, status, terminate, restart and purge; `{id}` is an
instance id or a flow-run id. Each route's docstring says its answers, and the generated HTTP reference
lists them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse

from fanout.api.body import orchestration_input, parse_request, read_limited
from fanout.api.deadline import bounded
from fanout.api.deps import Changes, InstancesDep, Settings, State
from fanout.api.durable_payloads import list_entry
from fanout.api.listing import CONTINUATION_HEADER, BadQuery, list_instances
from fanout.api.openapi_doc import LIST_QUERY, START_BODY
from fanout.api.results_routes import inline_limited
from fanout.api.schemas import ErrorDetail, Health, InstanceEntry, InstanceStatus, ManagementUrls, PurgeReport
from fanout.api.security import require_token
from fanout.api.state_changes import StateChanges
from fanout.core.prefect_adapter import client_retries_off
from fanout.core.settings import ApiSettings
from fanout.inputs.request import INSTANCE_ID_PATTERN
from fanout.service.idempotency import BadIdempotencyKey, checked_key
from fanout.service.instances import Found, Instances, Started
from fanout.service.orchestrators import Orchestrator, UnknownOrchestrator, spelled
from fanout.service.runs import RunRecord
from fanout.service.status import StatusDocument
from fanout.service.webhook_errors import DeploymentNotFound, InstanceNotFound

INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)
WAIT_DESCRIPTION = (
    "Seconds to hold the request while the instance is not finished (capped by FANOUT_WEBHOOK_MAX_WAIT_SECONDS); "
    "it answers as soon as the instance finishes. 0: answer at once."
)
STALE_READ_SECONDS = 0.05
STALE_READ_WINDOW = 1.0
"""After a final-state event, a read that still shows the run unfinished is tried again every
STALE_READ_SECONDS for STALE_READ_WINDOW: the event can come before the server's write is visible."""


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The error answers a route documents, each `{"detail": why}`."""
    return {code: {"model": ErrorDetail, "description": ERROR_MEANINGS[code]} for code in codes}


ERROR_MEANINGS = {
    400: "Bad request: a malformed body, query or Idempotency-Key.",
    401: "Missing or wrong bearer token.",
    403: "A source this server does not allow.",
    404: "No such instance (or deployment).",
    409: "The instance is running, or in a state the operation does not apply to.",
    413: "Body, or the request as a Prefect parameter, too large.",
    415: "Body not application/json.",
    422: "A request the flow cannot take.",
    429: "The start queue is full: try again after Retry-After.",
    503: "Prefect (or the result storage) unavailable: try again after Retry-After.",
}
POLL = {"Location": {"description": "The status URL."}, "Retry-After": {"description": "Seconds to wait."}}
START_ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {"description": "Started (or queued): the management URLs.", "headers": POLL},
    **errors(400, 401, 403, 404, 409, 413, 415, 422, 429, 503),
}
MANAGE_ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {"description": "Accepted: the management URLs.", "headers": POLL},
    **errors(401, 404, 409, 503),
}

open_routes = APIRouter()
routes = APIRouter(dependencies=[Depends(require_token)])


@open_routes.get(
    "/health",
    response_model=Health,
    response_model_exclude_none=True,
    responses={503: {"model": Health, "description": "Prefect does not answer in time, or not connected yet."}},
)
async def health(state: State) -> Health | JSONResponse:
    """200 when the webhook can reach Prefect, 503 (with why) when it cannot, within
    `FANOUT_WEBHOOK_HEALTH_TIMEOUT_SECONDS` either way: a supervisor with a short timeout can act on it."""
    if state.instances is None:
        return unhealthy(Health(status="starting", detail="not connected to Prefect yet"))
    with client_retries_off(), bounded(state.settings.webhook_health_timeout_seconds):
        problem = await state.instances.runs.reachable()
    queued = state.instances.queue.queued_count()
    if problem is not None:
        return unhealthy(Health(status="unavailable", detail=problem, queued_starts=queued))
    return Health(status="ok", queued_starts=queued)


def unhealthy(health: Health) -> JSONResponse:
    return JSONResponse(health.model_dump(by_alias=True, exclude_none=True), status_code=503)


@routes.post(
    "/api/start-fanout",
    status_code=202,
    response_model=ManagementUrls,
    responses=START_ANSWERS,
    openapi_extra=START_BODY,
)
async def start_fanout(
    request: Request,
    response: Response,
    instances: InstancesDep,
    settings: Settings,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> ManagementUrls:
    return await start(request, response, instances, settings, idempotency_key, deployment=None)


@routes.post(
    "/api/start-fanout/{deployment}",
    status_code=202,
    response_model=ManagementUrls,
    responses=START_ANSWERS,
    openapi_extra=START_BODY,
)
async def start_deployment(
    request: Request,
    response: Response,
    deployment: str,
    instances: InstancesDep,
    settings: Settings,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> ManagementUrls:
    return await start(request, response, instances, settings, idempotency_key, deployment)


async def start(
    request: Request,
    response: Response,
    instances: InstancesDep,
    settings: ApiSettings,
    idempotency_key: str | None,
    deployment: str | None,
) -> ManagementUrls:
    """Start `deployment` of the flow (the default when None, or the flow's own name): 202 with the management
    URLs."""
    try:
        key = checked_key(idempotency_key)
    except BadIdempotencyKey as error:
        raise HTTPException(400, str(error)) from None
    body = await read_limited(request, settings.webhook_max_body_bytes)
    try:
        admitted = await instances.admission_settings(deployment, settings)
    except DeploymentNotFound:
        assert deployment is not None
        if spelled(deployment) != spelled(instances.flow_name):
            other = await _other_flow(instances, deployment)
            value = orchestration_input(body, request.headers.get("content-type"))
            return accepted(request, response, settings, await instances.start_flow(other, value, None, key))
        # The seed's flow by its own name: its default deployment, as `POST /api/start-fanout` and the
        # Durable Functions start of the seed's orchestrator run it.
        deployment, admitted = None, settings
    fanout_request = parse_request(
        body, request.headers.get("content-type"), admitted, settings.webhook_max_parameter_bytes
    )
    return accepted(request, response, settings, await instances.start(fanout_request, key, deployment))


async def _other_flow(instances: InstancesDep, name: str) -> Orchestrator:
    """The deployment of another flow that `name` names (its flow's or its own name; the body is then any
    JSON input, src/fanout/service/orchestrators.py); 404 listing the names known when none does."""
    try:
        orchestrator = await instances.orchestrator(name)
    except UnknownOrchestrator as error:
        raise DeploymentNotFound(f"no deployment {name!r}; nothing was started. {error}") from None
    if instances.runs_the_seed(orchestrator):  # the seed's flow by its own name: this route names deployments
        raise DeploymentNotFound(f"no deployment {name!r} of {instances.flow_name!r}; nothing was started")
    return orchestrator


@routes.get(
    "/api/instances",
    response_model=list[InstanceEntry],
    responses={
        200: {"headers": {CONTINUATION_HEADER: {"description": "The next page's continuationToken."}}},
        **errors(400, 401, 503),
    },
    openapi_extra=LIST_QUERY,
)
async def list_all(
    request: Request,
    response: Response,
    instances: InstancesDep,
    continuation: Annotated[str | None, Header(alias=CONTINUATION_HEADER)] = None,
) -> list[InstanceEntry]:
    """Instances by runtimeStatus and creation time, newest first, `top` per page: Durable Functions' list."""
    try:
        listed = await list_instances(instances, request.query_params, continuation)
    except BadQuery as error:
        raise HTTPException(400, str(error)) from None
    response.headers.update(listed.headers)
    return [
        InstanceEntry.model_validate(list_entry(run, status, custom, listed.show_input, instances.flow_name))
        for run, status, custom in listed.entries
    ]


@routes.get(
    "/api/instances/{instance_id}",
    response_model=InstanceStatus,
    response_model_exclude_unset=True,
    responses={
        200: {"description": "Finished: Completed, Failed or Terminated."},
        202: {"model": InstanceStatus, "description": "Pending, Running or Suspended: poll again.", "headers": POLL},
        **errors(401, 404, 503),
    },
)
async def status(
    request: Request,
    response: Response,
    instance_id: str,
    instances: InstancesDep,
    settings: Settings,
    changes: Changes,
    wait: Annotated[float, Query(ge=0, description=WAIT_DESCRIPTION)] = 0,
) -> InstanceStatus:
    """The instance's status: 200 once finished, else 202. With `wait`, held until it finishes or `wait`
    seconds pass, so the client hears of the end as the server records it."""
    document = await finished_or_waited(
        instances, changes, checked_instance(instance_id), min(wait, settings.webhook_max_wait_seconds), settings
    )
    content = inline_limited(document.model_dump(mode="json", by_alias=True), request, settings)
    if not document.finished:
        response.status_code = 202
        response.headers.update(poll_headers(settings, str(request.url)))
    return InstanceStatus.model_validate(content)


@routes.post(
    "/api/instances/{instance_id}/terminate", status_code=202, response_model=ManagementUrls, responses=MANAGE_ANSWERS
)
async def terminate(
    request: Request, response: Response, instance_id: str, instances: InstancesDep, settings: Settings
) -> ManagementUrls:
    return accepted(request, response, settings, await instances.terminate(checked_instance(instance_id)))


@routes.post(
    "/api/instances/{instance_id}/restart", status_code=202, response_model=ManagementUrls, responses=MANAGE_ANSWERS
)
async def restart(
    request: Request, response: Response, instance_id: str, instances: InstancesDep, settings: Settings
) -> ManagementUrls:
    return accepted(request, response, settings, await instances.restart(checked_instance(instance_id)))


@routes.delete("/api/instances/{instance_id}", response_model=PurgeReport, responses=errors(401, 404, 409, 503))
async def purge(instance_id: str, instances: InstancesDep) -> PurgeReport:
    report = await instances.purge(checked_instance(instance_id))
    return PurgeReport.model_validate(report.document())


async def finished_or_waited(
    instances: Instances, changes: StateChanges, instance_id: str, wait: float, settings: ApiSettings
) -> StatusDocument:
    """The status document once the instance has finished, or as it is when `wait` seconds have passed.

    Each read has a Prefect budget of its own (src/fanout/api/deadline.py): the wait in between is not
    Prefect's time. After its final-state event the run is read again at once, and shortly after if that
    read still shows it unfinished (the event can come before the server's write is visible)."""
    until = changes.now() + wait
    stale_reads_until = 0.0
    found: Found | None = None
    while True:
        since = changes.now()
        with bounded(settings.webhook_read_deadline_seconds):
            found = await instances.find(instance_id) if found is None else await instances.again(found, instance_id)
            document = await instances.document(found)
        left = until - changes.now()
        if document.finished or left <= 0:
            return document
        if since < stale_reads_until:
            left = min(left, STALE_READ_SECONDS)
        run_id = found.flow_run_id if isinstance(found, RunRecord) else None
        if await changes.wait(run_id, since, left):
            stale_reads_until = changes.now() + STALE_READ_WINDOW


def checked_instance(instance_id: str) -> str:
    """An id that could name an instance, else 404 before any lookup."""
    if not INSTANCE_ID.match(instance_id):
        raise InstanceNotFound(f"no instance {instance_id!r}")
    return instance_id


def management_urls(request: Request, settings: ApiSettings, started: Started) -> ManagementUrls:
    """The seed's management payload for one instance (`uiUrl` is null until its run exists)."""
    base = (settings.webhook_public_url or str(request.base_url)).rstrip("/")
    status_url = f"{base}/api/instances/{started.instance_id}"
    return ManagementUrls(
        id=started.instance_id,
        status_query_get_uri=status_url,
        terminate_post_uri=f"{status_url}/terminate",
        restart_post_uri=f"{status_url}/restart",
        purge_history_delete_uri=status_url,
        ui_url=started.ui_url,
    )


def accepted(request: Request, response: Response, settings: ApiSettings, started: Started) -> ManagementUrls:
    """The management URLs, with the status URL as Location and the poll interval as Retry-After."""
    urls = management_urls(request, settings, started)
    response.headers.update(poll_headers(settings, urls.status_query_get_uri))
    return urls


def poll_headers(settings: ApiSettings, location: str) -> dict[str, str]:
    return {"Location": location, "Retry-After": str(settings.webhook_retry_after_seconds)}

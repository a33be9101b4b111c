"""Durable Functions' HTTP API at `/runtime/webhooks/durabletask/`, so its clients drive fanout unmodified.

A second route table over the same operations as `/api/` (src/fanout/service/instances.py and
src/fanout/service/instance_management.py), behind the webhook's token. Status codes follow Durable
Functions and the `azure-functions-durable` client, as docs/how-to/durable-functions.md lists them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from fanout.api import listing
from fanout.api.body import orchestration_input, parse_request, read_limited
from fanout.api.deps import InstancesDep, Settings
from fanout.api.durable_payloads import (
    BASE_PATH,
    ORCHESTRATOR,
    flag,
    history,
    list_entry,
    management_payload,
    query_from,
    status_body,
)
from fanout.api.openapi_doc import (
    LIST_QUERY,
    PURGE_QUERY,
    REASON_QUERY,
    RESTART_QUERY,
    START_BODY,
    STATUS_QUERY,
)
from fanout.api.routes import INSTANCE_ID
from fanout.api.schemas import (
    CheckStatusPayload,
    DurableError,
    DurableStatus,
    ErrorDetail,
    EventDiscarded,
    InstanceEntry,
    NothingPurged,
    UnfinishedPurge,
)
from fanout.api.schemas import PurgeReport as PurgeDocument
from fanout.api.security import link_code, require_any_form
from fanout.core.settings import ApiSettings
from fanout.inputs.request import FanoutRequest
from fanout.service.idempotency import BadIdempotencyKey, checked_key
from fanout.service.instance_management import (
    BadQuery,
    Management,
    finished_item_rows,
    management_for,
    status_of,
)
from fanout.service.instances import Found, Instances, PurgeReport, Started
from fanout.service.orchestrators import BadOrchestrationInput, Orchestrator, UnknownOrchestrator, spelled
from fanout.service.runs import LABEL_DEPLOYMENT, RunRecord
from fanout.service.start_queue import QueuedStart
from fanout.service.status import FINISHED, RuntimeStatus
from fanout.service.webhook_errors import (
    DeploymentNotFound,
    InstanceConflict,
    InstanceNotFound,
    StartRefused,
    StartRejected,
    WebhookError,
)


def answers(*codes: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """The answers a route documents: each error code in Durable Functions' shape, `s202="..."` a bodyless 202."""
    documented: dict[int | str, dict[str, Any]] = {
        code: {"model": DurableError, "description": ERROR_MEANINGS[code]} for code in codes
    }
    documented.update({name.removeprefix("s"): {"description": text} for name, text in described.items()})
    return {**documented, **COMMON}


ERROR_MEANINGS = {
    400: "Bad request: an unknown orchestrator, a malformed body, query or Idempotency-Key.",
    404: "No such instance.",
    409: "The instance is in a state the operation does not apply to.",
    410: "The instance has finished (or, for rewind, did not fail).",
    413: "Body, or the request as a Prefect parameter, too large.",
    429: "The start queue is full: try again after Retry-After.",
}
COMMON: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorDetail, "description": "Missing or wrong token."},
    503: {"model": ErrorDetail, "description": "Prefect unavailable: try again after Retry-After."},
}
POLL = {"Location": {"description": "The status URL."}, "Retry-After": {"description": "Seconds to wait."}}

router = APIRouter(prefix=BASE_PATH, dependencies=[Depends(require_any_form)], tags=["Durable Functions API"])
IN_PROGRESS = frozenset({RuntimeStatus.PENDING, RuntimeStatus.RUNNING, RuntimeStatus.SUSPENDED})


@dataclass
class Admin:
    """The operations a Durable Functions route may call: the seed's, and the management ones."""

    instances: Instances
    management: Management

    async def find(self, instance_id: str) -> Found | None:
        """The instance by id or flow-run id (src/fanout/service/instances.py), else None."""
        if not INSTANCE_ID.match(instance_id):
            return None
        try:
            return await self.instances.find(instance_id)
        except InstanceNotFound:
            return None

    def status_of(self, found: Found) -> RuntimeStatus:
        return status_of(found, self.instances.resumes)


def admin(instances: InstancesDep) -> Admin:
    return Admin(instances, management_for(instances.runs))


AdminDep = Annotated[Admin, Depends(admin)]


def problem(status_code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in Durable Functions' shape (`ExceptionMessage` is what its client reads)."""
    return error_response(DurableError(message=message, exception_message=message), status_code, headers)


def error_response(body: BaseModel, status_code: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body.model_dump(mode="json", by_alias=True), status_code=status_code, headers=headers)


def _not_found(instance_id: str) -> JSONResponse:
    return problem(404, f"No instance with ID '{instance_id}' found.")


def _gone(instance_id: str, status: RuntimeStatus, what: str) -> JSONResponse:
    return problem(410, f"Instance '{instance_id}' is {status.value}: cannot {what} it.")


def _base_url(request: Request, settings: ApiSettings) -> str:
    return (settings.webhook_public_url or str(request.base_url)).rstrip("/")


def _accepted(
    request: Request, response: Response, settings: ApiSettings, instance_id: str, ui_url: str | None
) -> CheckStatusPayload:
    payload = management_payload(_base_url(request, settings), instance_id, link_code(request), ui_url)
    response.headers["Location"] = payload.status_query_get_uri
    response.headers["Retry-After"] = str(settings.webhook_retry_after_seconds)
    return payload


def _refused(error: WebhookError) -> JSONResponse:
    """A start the operations refused, in Durable Functions' shape (400 for input Prefect cannot take)."""
    status_code = 400 if isinstance(error, StartRejected) else error.status_code  # the orchestrator errors are 400
    return problem(status_code, str(error), headers=error.headers)


STARTED = answers(400, 409, 413, 429, s202="Started (or queued): Durable Functions' check-status payload.")
STARTED["202"]["headers"] = POLL


@router.post(
    "/orchestrators/{name}",
    status_code=202,
    response_model=CheckStatusPayload,
    responses=STARTED,
    openapi_extra=START_BODY,
)
@router.post(
    "/orchestrators/{name}/{instance_id}",
    status_code=202,
    response_model=CheckStatusPayload,
    responses=STARTED,
    openapi_extra=START_BODY,
)
async def start_orchestration(
    request: Request,
    response: Response,
    name: str,
    instances: InstancesDep,
    settings: Settings,
    instance_id: str | None = None,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> CheckStatusPayload | JSONResponse:
    """Start the deployment the orchestrator name resolves to (a flow's or a deployment's name,
    src/fanout/service/orchestrators.py). The seed's input is its request (empty: the default); another
    flow's input is any JSON value, its parameters as an object or its one required parameter's value."""
    if instance_id is not None and not INSTANCE_ID.match(instance_id):
        return problem(
            400,
            f"instance id {instance_id!r} must be 1..128 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    try:
        key = checked_key(idempotency_key)
        orchestrator = await _orchestrator(instances, name, settings)
        body = await read_limited(request, settings.webhook_max_body_bytes)
        if instances.runs_the_seed(orchestrator):
            started = await _start_seed(request, body, instances, settings, orchestrator, instance_id, key)
        else:
            value = orchestration_input(body, request.headers.get("content-type"))
            started = await instances.start_flow(orchestrator, value, instance_id, key)
    except (BadIdempotencyKey, UnknownOrchestrator, BadOrchestrationInput) as error:
        return problem(400, str(error))
    except HTTPException as error:
        return problem(400 if error.status_code in (400, 415, 422) else error.status_code, str(error.detail))
    except (InstanceConflict, StartRejected, StartRefused, DeploymentNotFound) as error:
        return _refused(error)
    return _accepted(request, response, settings, started.instance_id, started.ui_url)


async def _orchestrator(instances: Instances, name: str, settings: ApiSettings) -> Orchestrator:
    """The deployment `name` starts; the seed's orchestrator name is the webhook's default deployment."""
    if spelled(name) == spelled(ORCHESTRATOR):
        flow, _, deployment = settings.deployment_name.partition("/")
        return Orchestrator(flow, deployment)
    return await instances.orchestrator(name)


async def _start_seed(
    request: Request,
    body: bytes,
    instances: Instances,
    settings: ApiSettings,
    orchestrator: Orchestrator,
    instance_id: str | None,
    key: str | None,
) -> Started:
    """A start of a deployment of the seed's flow: the body is its `FanoutRequest`, checked as on `/api/`."""
    deployment = None if orchestrator.full_name == settings.deployment_name else orchestrator.deployment
    admitted = await instances.admission_settings(deployment, settings)
    fanout_request = parse_request(
        _unwrapped(body), request.headers.get("content-type"), admitted, settings.webhook_max_parameter_bytes
    )
    return await instances.start(_with_instance(fanout_request, instance_id), key, deployment)


def _unwrapped(body: bytes) -> bytes:
    """The body as JSON of the input: `azure-functions-durable` sends its input JSON-encoded twice
    (a JSON string holding the JSON), and `null` for no input."""
    try:
        value = json.loads(body) if body.strip() else None
    except (ValueError, RecursionError):  # not UTF-8, not JSON, an integer Python refuses to read
        return body  # parse_request answers 400 with the reason
    if value is None:
        return b""
    # A lone surrogate in the inner text stays undecodable, so parse_request refuses it as malformed.
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else body


def _with_instance(fanout_request: FanoutRequest, instance_id: str | None) -> FanoutRequest:
    if instance_id is None:
        return fanout_request
    if fanout_request.instance_id not in (None, instance_id):
        raise HTTPException(
            400, f"the URL names instance {instance_id!r} but the body names {fanout_request.instance_id!r}"
        )
    return fanout_request.model_copy(update={"instance_id": instance_id})


@router.get(
    "/instances/{instance_id}",
    response_model=DurableStatus,
    response_model_exclude_unset=True,
    responses={
        200: {"description": "Finished: Completed, Failed or Terminated."},
        202: {"model": DurableStatus, "description": "Pending, Running or Suspended: poll again.", "headers": POLL},
        500: {"model": DurableStatus, "description": "Failed, with returnInternalServerErrorOnFailure=true."},
        **answers(400, 404),
    },
    openapi_extra=STATUS_QUERY,
)
async def get_status(
    request: Request, response: Response, instance_id: str, ops: AdminDep, settings: Settings
) -> DurableStatus | JSONResponse:
    """The instance's status; 202 while it runs (Location, Retry-After), 200 once finished."""
    params = request.query_params
    try:
        show_input = flag(params.get("showInput"), True, "showInput")
        show_history = flag(params.get("showHistory"), False, "showHistory")
        with_output = flag(params.get("showHistoryOutput"), False, "showHistoryOutput")
        failure_is_500 = flag(
            params.get("returnInternalServerErrorOnFailure"), False, "returnInternalServerErrorOnFailure"
        )
    except BadQuery as error:
        return problem(400, str(error))
    found = await ops.find(instance_id)
    if found is None:
        return _not_found(instance_id)
    document = await ops.instances.document(found)  # the seed's status; status_body names the orchestrator
    content = document.model_dump(mode="json", by_alias=True)
    events = None
    if show_history and isinstance(found, QueuedStart):
        events = []  # nothing has run yet
    elif show_history and isinstance(found, RunRecord):
        rows = await finished_item_rows(ops.management, found, document.runtime_status)
        events = history(found, document.runtime_status, rows, content.get("output"), with_output)
    name = (found.flow if isinstance(found, RunRecord) else None) or ORCHESTRATOR
    body = status_body(content, show_input, events, name)
    if document.runtime_status in IN_PROGRESS:
        response.status_code = 202
        response.headers["Location"] = str(request.url)
        response.headers["Retry-After"] = str(settings.webhook_retry_after_seconds)
    elif document.runtime_status is RuntimeStatus.FAILED and failure_is_500:
        response.status_code = 500
    return DurableStatus.model_validate(body)


LISTED = {
    200: {"headers": {listing.CONTINUATION_HEADER: {"description": "The next page's continuationToken."}}},
    **answers(400),
}


@router.get("/instances", response_model=list[InstanceEntry], responses=LISTED, openapi_extra=LIST_QUERY)
@router.get("/instances/", response_model=list[InstanceEntry], include_in_schema=False)
async def list_instances(
    request: Request,
    response: Response,
    ops: AdminDep,
    continuation: Annotated[str | None, Header(alias="x-ms-continuation-token")] = None,
) -> list[InstanceEntry] | JSONResponse:
    """Instances matching createdTimeFrom/To, runtimeStatus, instanceIdPrefix; `top` per page
    (src/fanout/api/listing.py, shared with `GET /api/instances`)."""
    try:
        listed = await listing.list_instances(ops.instances, request.query_params, continuation)
    except BadQuery as error:
        return problem(400, str(error))
    response.headers.update(listed.headers)
    return [
        InstanceEntry.model_validate(list_entry(run, status, custom, listed.show_input))
        for run, status, custom in listed.entries
    ]


@router.post(
    "/instances/{instance_id}/terminate",
    status_code=202,
    response_class=Response,
    responses=answers(404, 410, s202="Terminating."),
)
async def terminate(instance_id: str, ops: AdminDep) -> Response:
    """Cancel the instance: 202, 410 when it already finished."""
    found = await ops.find(instance_id)
    if found is None:
        return _not_found(instance_id)
    if ops.status_of(found) in FINISHED:
        return _gone(instance_id, ops.status_of(found), "terminate")
    try:
        await ops.instances.terminate(instance_id)
    except InstanceConflict:  # it finished meanwhile
        return _gone(instance_id, ops.status_of(await ops.find(instance_id) or found), "terminate")
    return Response(status_code=202)


@router.post(
    "/instances/{instance_id}/suspend",
    status_code=202,
    response_class=Response,
    responses=answers(404, 409, 410, s202="Suspended (or suspending)."),
    openapi_extra=REASON_QUERY,
)
async def suspend(request: Request, instance_id: str, ops: AdminDep) -> Response:
    """Prefect's suspend: no new item starts; resume continues from the checkpoints."""
    found = await ops.find(instance_id)
    if found is None:
        return _not_found(instance_id)
    status = ops.status_of(found)
    if status in FINISHED:
        return _gone(instance_id, status, "suspend")
    if isinstance(found, QueuedStart):
        return problem(409, f"Instance '{instance_id}' has not started yet: terminate it instead.")
    if status is not RuntimeStatus.SUSPENDED:
        refused = await ops.management.suspend(found, request.query_params.get("reason") or "")
        if refused:
            return problem(409, f"Instance '{instance_id}' cannot be suspended now: {refused}")
    return Response(status_code=202)


@router.post(
    "/instances/{instance_id}/resume",
    status_code=202,
    response_class=Response,
    responses=answers(404, 409, 410, s202="Resumed (or not suspended)."),
    openapi_extra=REASON_QUERY,
)
async def resume(request: Request, instance_id: str, ops: AdminDep) -> Response:
    """Resume a suspended instance (a no-op for one that is not suspended)."""
    found = await ops.find(instance_id)
    if found is None:
        return _not_found(instance_id)
    status = ops.status_of(found)
    if status in FINISHED:
        return _gone(instance_id, status, "resume")
    if status is RuntimeStatus.SUSPENDED and isinstance(found, RunRecord):
        refused = await ops.management.resume(found, request.query_params.get("reason") or "")
        if refused:
            return problem(409, f"Instance '{instance_id}' cannot be resumed now: {refused}")
    return Response(status_code=202)


@router.post(
    "/instances/{instance_id}/rewind",
    status_code=202,
    response_class=Response,
    responses=answers(404, 410, s202="The failed items run again."),
)
async def rewind(instance_id: str, ops: AdminDep) -> Response:
    """fanout's redrive: the failed run goes again and only its failed items run (the rest are checkpointed)."""
    found = await ops.find(instance_id)
    if found is None:
        return _not_found(instance_id)
    status = ops.status_of(found)
    if status is not RuntimeStatus.FAILED or isinstance(found, QueuedStart):
        return problem(410, f"Instance '{instance_id}' is {status.value}: only a Failed run is rewound.")
    await ops.instances.restart(instance_id)
    return Response(status_code=202)


@router.post(
    "/instances/{instance_id}/restart",
    status_code=202,
    response_model=str,
    responses={
        202: {"description": "The id of the instance that runs.", "headers": {"Location": POLL["Location"]}},
        **answers(400, 404, 409, 413, 429),
    },
    openapi_extra=RESTART_QUERY,
)
async def restart(
    request: Request, response: Response, instance_id: str, ops: AdminDep, settings: Settings
) -> str | JSONResponse:
    """Run the instance's input again: under a new id (the default), or the same one once it finished
    (which reuses its checkpoints). Answers the id that runs."""
    try:
        new_id = flag(request.query_params.get("restartWithNewInstanceId"), True, "restartWithNewInstanceId")
    except BadQuery as error:
        return problem(400, str(error))
    found = await ops.find(instance_id)
    if found is None:
        return _not_found(instance_id)
    if new_id:
        try:
            running_id = (await _start_again(ops.instances, found)).instance_id
        except (InstanceConflict, StartRejected, StartRefused, UnknownOrchestrator, BadOrchestrationInput) as error:
            return _refused(error)
    elif ops.status_of(found) not in FINISHED or isinstance(found, QueuedStart):
        return problem(409, f"Instance '{instance_id}' is {ops.status_of(found).value}; restart it once it finished.")
    else:
        await ops.instances.restart(instance_id)
        running_id = found.instance_id
    links = management_payload(_base_url(request, settings), running_id, link_code(request), None)
    response.headers["Location"] = links.status_query_get_uri
    return running_id


async def _start_again(instances: Instances, found: Found) -> Started:
    """A new instance with the input of `found`: the seed's request, or another flow's parameters."""
    if isinstance(found, RunRecord) and found.flow is not None:
        orchestrator = await instances.orchestrator(str(found.labels.get(LABEL_DEPLOYMENT) or found.flow))
        return await instances.start_flow(orchestrator, found.parameters or None, None, None)
    original = json.loads(found.request) if isinstance(found, QueuedStart) else found.parameters.get("request")
    fresh = FanoutRequest.model_validate(original or {}).model_copy(update={"instance_id": None})
    return await instances.start(fresh, None)


@router.post(
    "/instances/{instance_id}/raiseEvent/{event_name}",
    status_code=202,
    response_model=EventDiscarded,
    responses=answers(400, 404, 410, 413),
)
async def raise_event(
    request: Request, instance_id: str, event_name: str, ops: AdminDep, settings: Settings
) -> EventDiscarded | JSONResponse:
    """A fan-out/fan-in orchestration waits for no event: accepted and discarded while it runs, 410 after."""
    body = await read_limited(request, settings.webhook_max_body_bytes)
    if body.strip():
        try:
            json.loads(body)
        except (ValueError, RecursionError):
            return problem(400, "Only application/json request content is supported")
    found = await ops.find(instance_id)
    if found is None:
        return _not_found(instance_id)
    if ops.status_of(found) in FINISHED:
        return _gone(instance_id, ops.status_of(found), f"raise event '{event_name}' on")
    message = (
        f"Event '{event_name}' accepted and discarded: the '{ORCHESTRATOR}' orchestration waits for no external event."
    )
    return EventDiscarded(message=message)


NOT_PURGED: dict[int | str, dict[str, Any]] = {
    404: {
        "model": PurgeDocument | UnfinishedPurge | NothingPurged,
        "description": "Nothing deleted: the instance is unknown, not finished, or went meanwhile.",
    }
}


@router.delete("/instances/{instance_id}", response_model=PurgeDocument, responses={**NOT_PURGED, **answers()})
async def purge(instance_id: str, response: Response, ops: AdminDep) -> PurgeDocument | JSONResponse:
    """Delete a finished instance's runs, artifacts and checkpoints, and say what went (the seed's purge,
    src/fanout/service/instances.py); 404 (nothing deleted) for an unknown or unfinished one."""
    found = await ops.find(instance_id)
    if found is None:
        return error_response(NothingPurged(), 404)
    status = ops.status_of(found)
    if status not in FINISHED:
        message = f"Instance '{instance_id}' is {status.value}: only finished instances are purged."
        return error_response(UnfinishedPurge(message=message, exception_message=message), 404)
    return purged(await _purge_one(ops, instance_id), response)


def purged(report: PurgeReport, response: Response) -> PurgeDocument:
    """What went; 404 when nothing did."""
    if not report.instances:
        response.status_code = 404
    return PurgeDocument.model_validate(report.document())


async def _purge_one(ops: Admin, instance_id: str) -> PurgeReport:
    try:
        return await ops.instances.purge(instance_id)
    except (InstanceConflict, InstanceNotFound):  # started again, or purged, meanwhile
        return PurgeReport()


@router.delete(
    "/instances",
    response_model=PurgeDocument,
    responses={404: {"model": PurgeDocument, "description": "None matched."}, **answers(400)},
    openapi_extra=PURGE_QUERY,
)
@router.delete("/instances/", response_model=PurgeDocument, include_in_schema=False)
async def purge_matching(request: Request, response: Response, ops: AdminDep) -> PurgeDocument | JSONResponse:
    """Delete the finished instances created in [createdTimeFrom, createdTimeTo] with a runtimeStatus listed."""
    policy = ops.instances.resumes
    try:
        query = query_from(request.query_params, with_prefix=False)
    except BadQuery as error:
        return problem(400, str(error))
    if query.created_from is None:
        return problem(400, "createdTimeFrom is required to purge by filter")
    runs = await ops.management.every()
    matching = [run for run in runs if query.matches(run, policy) and status_of(run, policy) in FINISHED]
    report = PurgeReport()
    for run in matching:  # by flow-run id: it finds runs with no instance tag too
        report += await _purge_one(ops, str(run.flow_run_id))
    return purged(report, response)

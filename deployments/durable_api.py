"""Durable Functions' HTTP API at `/runtime/webhooks/durabletask/`, so its clients drive fanout unmodified.

Served by the webhook app, behind its token (deployments/durable_auth.py), on
the same start and status code as fanout's `/api/` routes. Status codes follow
Durable Functions and the `azure-functions-durable` client's switch statements:

    POST   orchestrators/{name}[/{instanceId}]   202 + management payload; 400 + ExceptionMessage
    GET    instances/{id}                        202 Pending/Running/Suspended, 200 finished
                                                 (Failed: 500 with returnInternalServerErrorOnFailure=true), 404
    GET    instances                             200 [status...], x-ms-continuation-token when paged
    POST   instances/{id}/terminate|suspend|resume   202; 410 finished; 404
    POST   instances/{id}/rewind                 202: the failed items run again; 410 unless Failed
    POST   instances/{id}/restart                202 + the (new) instance id
    POST   instances/{id}/raiseEvent/{name}      202 (no fanout orchestration waits for events: discarded), 410, 404
    DELETE instances/{id}                        200 {instancesDeleted}; 404 unknown or not finished
    DELETE instances?createdTimeFrom=...         200 {instancesDeleted}; 404 when none matched
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi.responses import JSONResponse

from deployments.body import parse_request, read_limited
from deployments.durable_auth import link_code, require_durable_auth
from deployments.durable_payloads import (
    BASE_PATH,
    ORCHESTRATOR,
    flag,
    history,
    list_entry,
    management_payload,
    query_from,
    status_body,
    top_from,
)
from deployments.idempotency import BadIdempotencyKey, checked_key
from deployments.instances import BadQuery, Instances, instances_for, page, status_of
from deployments.runs import RunRecord
from deployments.status import FINISHED, RuntimeStatus
from deployments.webhook import (
    INSTANCE_ID,
    _base_url,
    _runs,
    prefect_deadline,
    start_instance,
    status_document,
)
from flows.request import FanoutRequest
from flows.settings import FanoutSettings

router = APIRouter(prefix=BASE_PATH, dependencies=[Depends(require_durable_auth)], tags=["Durable Functions API"])
IN_PROGRESS = frozenset({RuntimeStatus.PENDING, RuntimeStatus.RUNNING, RuntimeStatus.SUSPENDED})


def problem(status_code: int, message: str, **extra: Any) -> JSONResponse:
    """An error in Durable Functions' shape (`ExceptionMessage` is what its client reads)."""
    return JSONResponse({"Message": message, "ExceptionMessage": message, **extra}, status_code=status_code)


def _instances(request: Request) -> Instances:
    return instances_for(_runs(request))


def _settings(request: Request) -> FanoutSettings:
    settings: FanoutSettings = request.app.state.settings
    return settings


async def _find(request: Request, instance_id: str) -> RunRecord | None:
    if not INSTANCE_ID.match(instance_id):
        return None
    return await _instances(request).find(instance_id)


def _not_found(instance_id: str) -> JSONResponse:
    return problem(404, f"No instance with ID '{instance_id}' found.")


def _gone(run: RunRecord, what: str) -> JSONResponse:
    return problem(410, f"Instance '{run.instance_id}' is {status_of(run).value}: cannot {what} it.")


def _accepted_payload(request: Request, run: RunRecord) -> JSONResponse:
    payload = management_payload(_base_url(request), run.instance_id, link_code(request), _runs(request).ui_url(run))
    headers = {"Location": payload["statusQueryGetUri"], "Retry-After": str(_settings(request).webhook_retry_after_seconds)}
    return JSONResponse(payload, status_code=202, headers=headers)


@router.post("/orchestrators/{name}")
@router.post("/orchestrators/{name}/{instance_id}")
async def start_orchestration(
    request: Request, name: str, instance_id: str | None = None,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> Response:
    """Start the deployment the orchestrator name maps to; the body is the flow's request (empty: the seed)."""
    if name.casefold() != ORCHESTRATOR:
        return problem(400, f"The function '{name}' doesn't exist or is not an orchestrator; fanout has '{ORCHESTRATOR}'.")
    if instance_id is not None and not INSTANCE_ID.match(instance_id):
        return problem(400, f"instance id {instance_id!r} must be 1..128 letters, digits, '.', '_' or '-'")
    settings = _settings(request)
    try:
        key = checked_key(idempotency_key)
        body = _unwrapped(await read_limited(request, settings.webhook_max_body_bytes))
        fanout_request = _with_instance(parse_request(body, request.headers.get("content-type"), settings.max_items), instance_id)
        async with prefect_deadline(request):
            run = await start_instance(_runs(request), fanout_request, key, request.app.state.starts)
    except BadIdempotencyKey as error:
        return problem(400, str(error))
    except HTTPException as error:
        status_code = 400 if error.status_code in (400, 415, 422) else error.status_code
        return problem(status_code, str(error.detail))
    return _accepted_payload(request, run)


def _unwrapped(body: bytes) -> bytes:
    """The body as JSON of the input: `azure-functions-durable` sends its input JSON-encoded twice
    (a JSON string holding the JSON), and `null` for no input."""
    try:
        value = json.loads(body) if body.strip() else None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return body  # parse_request answers 400 with the reason
    if value is None:
        return b""
    return value.encode() if isinstance(value, str) else body


def _with_instance(fanout_request: FanoutRequest, instance_id: str | None) -> FanoutRequest:
    if instance_id is None:
        return fanout_request
    if fanout_request.instance_id not in (None, instance_id):
        raise HTTPException(400, f"the URL names instance {instance_id!r} but the body names {fanout_request.instance_id!r}")
    return fanout_request.model_copy(update={"instance_id": instance_id})


@router.get("/instances/{instance_id}")
async def get_status(request: Request, instance_id: str) -> Response:
    """The instance's status; 202 while it runs (Location, Retry-After), 200 once finished."""
    params = request.query_params
    try:
        show_input = flag(params.get("showInput"), True, "showInput")
        show_history = flag(params.get("showHistory"), False, "showHistory")
        with_output = flag(params.get("showHistoryOutput"), False, "showHistoryOutput")
        failure_is_500 = flag(params.get("returnInternalServerErrorOnFailure"), False, "returnInternalServerErrorOnFailure")
    except BadQuery as error:
        return problem(400, str(error))
    async with prefect_deadline(request):
        run = await _find(request, instance_id)
        if run is None:
            return _not_found(instance_id)
        document = (await status_document(_runs(request), run, ORCHESTRATOR)).model_dump(mode="json", by_alias=True)
        events = None
        if show_history:
            rows = await _instances(request).item_rows(run)
            events = history(run, status_of(run), rows, document.get("output"), with_output)
    body = status_body(document, show_input, events)
    status = RuntimeStatus(document["runtimeStatus"])
    if status in IN_PROGRESS:
        headers = {"Location": str(request.url), "Retry-After": str(_settings(request).webhook_retry_after_seconds)}
        return JSONResponse(body, status_code=202, headers=headers)
    return JSONResponse(body, status_code=500 if status is RuntimeStatus.FAILED and failure_is_500 else 200)


@router.get("/instances")
@router.get("/instances/", include_in_schema=False)
async def list_instances(
    request: Request, continuation: Annotated[str | None, Header(alias="x-ms-continuation-token")] = None,
) -> Response:
    """Instances matching createdTimeFrom/To, runtimeStatus, instanceIdPrefix; `top` per page."""
    params = request.query_params
    try:
        query = query_from(dict(params))
        top = top_from(params.get("top"))
        show_input = flag(params.get("showInput"), True, "showInput")
        async with prefect_deadline(request):
            matching = [run for run in await _instances(request).every() if query.matches(run)]
        chosen, token = page(matching, top, continuation or params.get("continuationToken"))
    except BadQuery as error:
        return problem(400, str(error))
    headers = {"x-ms-continuation-token": token} if token else {}
    return JSONResponse([list_entry(run, status_of(run), show_input) for run in chosen], headers=headers)


@router.post("/instances/{instance_id}/terminate")
async def terminate(request: Request, instance_id: str) -> Response:
    """Cancel the instance's run: 202, 410 when it already finished."""
    async with prefect_deadline(request):
        run = await _find(request, instance_id)
        if run is None:
            return _not_found(instance_id)
        if status_of(run) in FINISHED:
            return _gone(run, "terminate")
        await _runs(request).terminate(run)
    return Response(status_code=202)


@router.post("/instances/{instance_id}/suspend")
async def suspend(request: Request, instance_id: str) -> Response:
    """Prefect's suspend: no new items start; resume continues from the checkpoints."""
    async with prefect_deadline(request):
        run = await _find(request, instance_id)
        if run is None:
            return _not_found(instance_id)
        if status_of(run) in FINISHED:
            return _gone(run, "suspend")
        if status_of(run) is not RuntimeStatus.SUSPENDED:
            refused = await _instances(request).suspend(run, request.query_params.get("reason") or "")
            if refused:
                return problem(409, f"Instance '{instance_id}' cannot be suspended now: {refused}")
    return Response(status_code=202)


@router.post("/instances/{instance_id}/resume")
async def resume(request: Request, instance_id: str) -> Response:
    """Resume a suspended instance (a no-op for one that is not suspended)."""
    async with prefect_deadline(request):
        run = await _find(request, instance_id)
        if run is None:
            return _not_found(instance_id)
        if status_of(run) in FINISHED:
            return _gone(run, "resume")
        if status_of(run) is RuntimeStatus.SUSPENDED:
            refused = await _instances(request).resume(run, request.query_params.get("reason") or "")
            if refused:
                return problem(409, f"Instance '{instance_id}' cannot be resumed now: {refused}")
    return Response(status_code=202)


@router.post("/instances/{instance_id}/rewind")
async def rewind(request: Request, instance_id: str) -> Response:
    """fanout's redrive: the failed run goes again and only its failed items run (the rest are checkpointed)."""
    async with prefect_deadline(request):
        run = await _find(request, instance_id)
        if run is None:
            return _not_found(instance_id)
        if status_of(run) is not RuntimeStatus.FAILED:
            return problem(410, f"Instance '{instance_id}' is {status_of(run).value}: only a Failed instance is rewound.")
        await _runs(request).restart(run)
    return Response(status_code=202)


@router.post("/instances/{instance_id}/restart")
async def restart(request: Request, instance_id: str) -> Response:
    """Run the instance's input again: under a new id (the default), or the same one once it finished
    (which reuses its checkpoints). Answers the id that runs."""
    try:
        new_id = flag(request.query_params.get("restartWithNewInstanceId"), True, "restartWithNewInstanceId")
    except BadQuery as error:
        return problem(400, str(error))
    async with prefect_deadline(request):
        run = await _find(request, instance_id)
        if run is None:
            return _not_found(instance_id)
        if new_id:
            original = FanoutRequest.model_validate(run.parameters.get("request") or {})
            try:
                run = await start_instance(_runs(request), original.model_copy(update={"instance_id": None}), None,
                                           request.app.state.starts)
            except HTTPException as error:
                return problem(error.status_code, str(error.detail))
        elif status_of(run) not in FINISHED:
            return problem(409, f"Instance '{instance_id}' is still {status_of(run).value}; restart it once it finished.")
        else:
            await _runs(request).restart(run)
    location = management_payload(_base_url(request), run.instance_id, link_code(request), None)["statusQueryGetUri"]
    return JSONResponse(run.instance_id, status_code=202, headers={"Location": location})


@router.post("/instances/{instance_id}/raiseEvent/{event_name}")
async def raise_event(request: Request, instance_id: str, event_name: str) -> Response:
    """A fan-out/fan-in orchestration waits for no event: accepted and discarded while it runs, 410 after."""
    body = await read_limited(request, _settings(request).webhook_max_body_bytes)
    if body.strip():
        try:
            json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            return problem(400, "Only application/json request content is supported")
    async with prefect_deadline(request):
        run = await _find(request, instance_id)
    if run is None:
        return _not_found(instance_id)
    if status_of(run) in FINISHED:
        return _gone(run, f"raise event '{event_name}' on")
    return JSONResponse(
        {"Message": f"Event '{event_name}' accepted and discarded: the '{ORCHESTRATOR}' orchestration waits for no external event."},
        status_code=202,
    )


@router.delete("/instances/{instance_id}")
async def purge(request: Request, instance_id: str) -> Response:
    """Delete a finished instance's runs; 404 (nothing deleted) for an unknown or unfinished one."""
    async with prefect_deadline(request):
        run = await _find(request, instance_id)
        if run is None:
            return JSONResponse({"instancesDeleted": 0}, status_code=404)
        if status_of(run) not in FINISHED:
            return problem(404, f"Instance '{instance_id}' is {status_of(run).value}: only finished instances are purged.",
                           instancesDeleted=0)
        deleted = min(1, await _instances(request).purge_instance(run))
    return JSONResponse({"instancesDeleted": deleted}, status_code=200 if deleted else 404)


@router.delete("/instances")
@router.delete("/instances/", include_in_schema=False)
async def purge_matching(request: Request) -> Response:
    """Delete the finished instances created in [createdTimeFrom, createdTimeTo] with a runtimeStatus listed."""
    try:
        query = query_from(dict(request.query_params), with_prefix=False)
    except BadQuery as error:
        return problem(400, str(error))
    if query.created_from is None:
        return problem(400, "createdTimeFrom is required to purge by filter")
    instances = _instances(request)
    async with prefect_deadline(request):
        matching = [run for run in await instances.every() if query.matches(run) and status_of(run) in FINISHED]
        deleted = sum([min(1, await instances.purge_instance(run)) for run in matching])
    return JSONResponse({"instancesDeleted": deleted}, status_code=200 if deleted else 404)


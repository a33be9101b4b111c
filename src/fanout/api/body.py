"""Turning a webhook request body into a checked `FanoutRequest`, or a 4xx that says why.

The body is read with a hard size cap (413 beyond it, whatever Content-Length
claims), must be JSON (415 for another media type, 400 when malformed), must be
an object with the flow's input fields (422 for unknown fields, wrong types,
out-of-range counts), all before anything reaches Prefect.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from fastapi import HTTPException, Request
from pydantic import ValidationError

from fanout.core.errors import InvalidRequest
from fanout.core.settings import ApiSettings
from fanout.inputs.admission import admit
from fanout.inputs.items import BadItem, check_nesting, check_unicode
from fanout.inputs.request import FanoutRequest
from fanout.inputs.sources import SourceForbidden


async def read_limited(request: Request, max_bytes: int) -> bytes:
    """The raw body, or 413 as soon as it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise HTTPException(400, "Content-Length must be a non-negative integer")
        if len(declared) > len(str(max_bytes)) or int(declared) > max_bytes:
            raise HTTPException(413, f"body larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise HTTPException(413, f"body larger than {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(
    body: bytes, content_type: str | None, settings: ApiSettings, max_parameter_bytes: int = 0
) -> FanoutRequest:
    """The checked request the body asks for; an empty body is the seed's default (5 items).

    A source must be one this server allows (403 otherwise: src/fanout/inputs/admission.py).
    A request Prefect would refuse as a flow-run parameter (larger than
    `max_parameter_bytes`, the server's PREFECT_SERVER_API_MAX_PARAMETER_SIZE)
    is refused here with 413 and why, before it is accepted: such a list cannot
    travel as a parameter.
    """
    if not body.strip():
        request = FanoutRequest()
    else:
        media_type = (content_type or "").split(";")[0].strip().lower()
        if media_type != "application/json":
            raise HTTPException(415, "body must be application/json")
        request = _validated(_json_object(body))
    try:
        admit(request, settings, over_http=True)
    except SourceForbidden as error:
        raise HTTPException(403, str(error)) from None
    except InvalidRequest as error:
        raise HTTPException(422, str(error)) from None
    _check_parameter_size(request, max_parameter_bytes)
    return request


INSTANCE_ID_ROOM = 160
"""Bytes an instance id and its key add to the parameter when the webhook fills it in."""


def _check_parameter_size(request: FanoutRequest, max_bytes: int) -> None:
    if max_bytes <= 0:
        return
    size = len(json.dumps({"request": request.model_dump(mode="json", exclude_defaults=True)}, separators=(",", ":")))
    if size + INSTANCE_ID_ROOM > max_bytes:
        raise HTTPException(
            413,
            f"the request is {size:,} bytes as a Prefect flow-run parameter, and Prefect takes at most "
            f"{max_bytes:,} (FANOUT_WEBHOOK_MAX_PARAMETER_BYTES, the server's PREFECT_SERVER_API_MAX_PARAMETER_SIZE): "
            "send fewer or shorter items, or `count`",
        )


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise HTTPException(400, f"malformed JSON: {error}") from None
    except ValueError as error:  # well-formed, but Python refuses it: an integer of more than 4,300 digits
        raise HTTPException(422, f"a value in the body cannot be read: {error}") from None
    if not isinstance(value, dict):
        raise HTTPException(422, f"body must be a JSON object, got {type(value).__name__}")
    return value


def _validated(fields: dict[str, Any]) -> FanoutRequest:
    try:
        return FanoutRequest.model_validate(fields)
    except ValidationError as error:
        raise HTTPException(422, validation_message(error)) from None


def validation_message(error: ValidationError) -> str:
    """Pydantic's errors in one line: `field: problem; field: problem`."""
    message = "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'body'}: {problem['msg']}" for problem in error.errors()
    )
    return message.encode("utf-8", "backslashreplace").decode("utf-8")  # a field name may be a lone surrogate


def orchestration_input(body: bytes, content_type: str | None) -> Any:
    """The orchestration's input, any JSON value (None for an empty body or `null`).

    `azure-functions-durable` sends its input JSON-encoded twice: a JSON string whose
    text is itself JSON is taken as that JSON (`"\\"/home/site\\""` is `"/home/site"`);
    a string that is not JSON (`"/home/site"`) is the string. A lone surrogate or nesting deeper
    than an item may have is refused (400), as Prefect could not store it as a parameter.
    """
    if not body.strip():
        return None
    media_type = (content_type or "application/json").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise HTTPException(415, "Only application/json request content is supported")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as error:  # not UTF-8, not JSON, an integer Python refuses to read
        raise HTTPException(400, f"malformed JSON: {error}") from None
    if isinstance(value, str):
        with contextlib.suppress(ValueError, RecursionError):  # a string that is not JSON is the input itself
            value = json.loads(value)
    try:
        check_unicode(value)
        check_nesting(value)
    except BadItem as error:
        raise HTTPException(400, f"the input cannot be a flow parameter: {error}") from None
    return value

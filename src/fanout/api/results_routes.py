"""`GET /api/instances/{id}/results?offset=&limit=`: a run's results in item order, a page at a time.

Also while the run is going (unfinished items are `pending`) and after it failed; read from the
instance's plan and checkpoints in result storage, which the webhook shares with the workers.
"""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request

from fanout.api.deps import Settings
from fanout.api.schemas import ErrorDetail, ResultsPage
from fanout.api.security import require_token
from fanout.core.errors import InvalidRequest
from fanout.core.settings import ApiSettings
from fanout.inputs.request import INSTANCE_ID_PATTERN
from fanout.storage.checkpoints import result_storage
from fanout.storage.instance_results import InstanceResults
from fanout.storage.results import MAX_PAGE, NoResults
from fanout.storage.results import ResultsPage as StoredPage

INSTANCE_ID = re.compile(INSTANCE_ID_PATTERN)
DEFAULT_LIMIT = 100

router = APIRouter(dependencies=[Depends(require_token)])


@router.get(
    "/api/instances/{instance_id}/results",
    response_model=ResultsPage,
    responses={
        401: {"model": ErrorDetail, "description": "Missing or wrong bearer token."},
        404: {"model": ErrorDetail, "description": "No results recorded for this instance."},
        422: {"model": ErrorDetail, "description": "An offset or limit out of range."},
    },
)
async def results(
    request: Request,
    instance_id: str,
    settings: Settings,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_LIMIT,
) -> ResultsPage:
    """One page of the instance's results; 404 for an instance with no recorded results."""
    if not INSTANCE_ID.match(instance_id):
        raise HTTPException(404, f"no instance {instance_id!r}")
    page = await asyncio.to_thread(read_instance_page, settings, instance_id, offset, limit)
    document: dict[str, Any] = page.document()
    document["nextUri"] = None if page.next is None else results_url(request, settings, instance_id, page.next, limit)
    return ResultsPage.model_validate(document)


def read_instance_page(settings: ApiSettings, instance_id: str, offset: int, limit: int) -> StoredPage:
    """The page, or the HTTP error that says why there is none."""
    try:
        return InstanceResults(result_storage(settings), instance_id).page(offset, limit)
    except NoResults as error:
        raise HTTPException(404, str(error)) from None
    except InvalidRequest as error:
        raise HTTPException(422, str(error)) from None


def results_url(
    request: Request, settings: ApiSettings, instance_id: str, offset: int = 0, limit: int = DEFAULT_LIMIT
) -> str:
    """The absolute URL of a results page."""
    base = (settings.webhook_public_url or str(request.base_url)).rstrip("/")
    return f"{base}/api/instances/{instance_id}/results?offset={offset}&limit={limit}"


def inline_limited(content: dict[str, Any], request: Request, settings: ApiSettings) -> dict[str, Any]:
    """A status document with `output` inlined only up to `FANOUT_OUTPUT_INLINE_LIMIT` items; past it,
    `output` is null and `outputUri` names the results pages."""
    output = content.get("output")
    if isinstance(output, list) and len(output) > settings.output_inline_limit:
        content["output"] = None
        content["outputUri"] = results_url(request, settings, str(content.get("instanceId")))
    return content

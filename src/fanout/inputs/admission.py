"""Whether a request may start at all: checked where it arrives, before anything is started.

A source must be one the server allows, and the items are checked (all of an inline list, the first
`PREVIEW_ITEMS` of a source), so a bad request is refused at once without reading a million lines.
The flow checks the whole source again when it plans, before any item runs.
"""

from __future__ import annotations

from itertools import islice

from fanout.core.settings import FlowSettings
from fanout.inputs.items import ItemValues, plan
from fanout.inputs.request import FanoutRequest, plan_items, plan_request
from fanout.inputs.sources import check_allowed, iter_source

PREVIEW_ITEMS = 1000


def admit(request: FanoutRequest, settings: FlowSettings, over_http: bool) -> None:
    """Raise `SourceForbidden` or `InvalidRequest` saying why the request cannot start; else return."""
    source = request.source
    if source is None:
        plan_items(request, settings.max_items, settings.max_item_bytes)
        return
    if over_http:
        check_allowed(source, settings.source_roots, settings.sources)
    elif source.generator is not None:
        check_allowed(source, [], settings.sources)
    roots = settings.source_roots if over_http else None
    preview = islice(iter_source(source, settings.max_item_bytes, roots), PREVIEW_ITEMS)
    planned = plan(preview, request.item_key)
    if len(planned) == 0:
        plan_items(request, settings.max_items, settings.max_item_bytes)  # says "at least 1"


def planned_items(request: FanoutRequest, settings: FlowSettings) -> tuple[list[str], ItemValues]:
    """The run's items (keys and values), read by the flow: a generator source must be in this run's
    `FANOUT_SOURCES` (a deployment names its own allow-list as a job variable), and a URI, where the
    process has `FANOUT_SOURCE_ROOTS`, must lie under one of them when it is opened."""
    if request.source is not None and request.source.generator is not None:
        check_allowed(request.source, [], settings.sources)
    roots = settings.source_roots or None
    return plan_request(request, settings.max_items, settings.max_item_bytes, roots)

"""Listing instances with Durable Functions' filters: one implementation behind both route tables.

`GET /api/instances` (src/fanout/api/routes.py) and
`GET /runtime/webhooks/durabletask/instances` (src/fanout/api/durable_api.py) take
the same query string and page the same way:

    runtimeStatus     comma list of Pending, Running, Completed, Failed, Terminated, Suspended
    createdTimeFrom   ISO 8601 (naive: UTC), inclusive
    createdTimeTo     ISO 8601, inclusive
    instanceIdPrefix  only instance ids starting with it
    top               page size, 1..1000 (none: every match)
    continuationToken the page to read, as the previous answer's `x-ms-continuation-token` header gave it;
                      the header `x-ms-continuation-token` on the request does the same and wins

Instances are listed newest first, one entry per instance (its newest run),
each with the `customStatus` its status document shows (one function builds
both: src/fanout/service/status.py). A bad value raises `BadQuery` naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from fanout.api.durable_payloads import query_from, top_from
from fanout.service.instance_management import BadQuery, management_for, page, status_of
from fanout.service.instances import Instances
from fanout.service.runs import RunRecord
from fanout.service.status import CustomStatus, RuntimeStatus, listed_custom_status

CONTINUATION_HEADER = "x-ms-continuation-token"
CONTINUATION_PARAM = "continuationToken"


READS_AT_ONCE = 8
"""Item reports read at a time for a page's finished instances."""


@dataclass(frozen=True)
class InstancePage:
    """One page of the list: each instance's newest run, runtimeStatus and customStatus, and the next page's token."""

    entries: list[tuple[RunRecord, RuntimeStatus, CustomStatus]]
    continuation: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {CONTINUATION_HEADER: self.continuation} if self.continuation else {}


async def list_instances(
    instances: Instances, params: Mapping[str, str], continuation_header: str | None = None
) -> InstancePage:
    """The page of instances the query string asks for; `BadQuery` before any Prefect call for a bad one."""
    query = query_from(dict(params))
    top = top_from(params.get("top"))
    token = continuation_header or params.get(CONTINUATION_PARAM) or None
    if token is not None:
        page([], None, token)  # a bad token is refused before reading the list
    policy = instances.resumes
    matching = [run for run in await management_for(instances.runs).every() if query.matches(run, policy)]
    chosen, following = page(matching, top, token)
    reads = asyncio.Semaphore(READS_AT_ONCE)

    async def custom(run: RunRecord) -> CustomStatus:
        async with reads:
            return await listed_custom_status(instances.runs, run, policy)

    customs = await asyncio.gather(*(custom(run) for run in chosen))
    return InstancePage(
        [(run, status_of(run, policy), status) for run, status in zip(chosen, customs, strict=True)], following
    )


__all__ = ["CONTINUATION_HEADER", "BadQuery", "InstancePage", "list_instances"]

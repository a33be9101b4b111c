"""Listing instances with Durable Functions' filters: one implementation behind both route tables.

`GET /api/instances` and `GET /runtime/webhooks/durabletask/instances` take the same query string
(`runtimeStatus`, `createdTimeFrom`, `createdTimeTo`, `instanceIdPrefix`, `top`, `continuationToken`,
`showInput`) and list one entry per instance, newest first; a bad value raises `BadQuery` naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

from fanout.api.durable_payloads import flag, query_from, top_from
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
    show_input: bool = True
    """`showInput`: whether each entry carries its instance's input (true when not given)."""

    @property
    def headers(self) -> dict[str, str]:
        return {CONTINUATION_HEADER: self.continuation} if self.continuation else {}


async def list_instances(
    instances: Instances, params: Mapping[str, str], continuation_header: str | None = None
) -> InstancePage:
    """The page of instances the query string asks for; `BadQuery` before any Prefect call for a bad one."""
    query = query_from(params)
    top = top_from(params.get("top"))
    show_input = flag(params.get("showInput"), True, "showInput")
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
        [(run, status_of(run, policy), status) for run, status in zip(chosen, customs, strict=True)],
        following,
        show_input,
    )


__all__ = ["CONTINUATION_HEADER", "BadQuery", "InstancePage", "list_instances"]

"""Partial failure: how many failed items a run tolerates, and the report of what failed.

Within the request's thresholds a run Completes with `null` in each failed item's slot; beyond them it
Fails. Either way it publishes an item report. Failed items leave no checkpoint, so a restart of the
instance executes exactly those items again.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import BaseModel

from fanout.core.errors import ItemsFailed
from fanout.core.outcome import ItemOutcome
from fanout.core.wrap_up import after_final_state
from fanout.engine.report import latest_table_rows

REPORT_KEY_PREFIX = "fanout-items-"


class ItemReport(BaseModel):
    """One item that failed or needed more than one attempt."""

    item: str
    status: str  # "failed" or "recovered"
    attempts: int
    error: str | None = None


def allowed_failures(total: int, count: int, percentage: float) -> int:
    """How many of `total` items may fail: the stricter of the limits that are set (non-zero).

    As in Step Functions' distributed map, a run fails when it exceeds either
    threshold; a threshold left at 0 is not set, and with neither set no
    failure is tolerated.
    """
    limits = [count] if count else []
    if percentage:
        limits.append(int(total * percentage // 100))
    return min(limits) if limits else 0


def item_reports(items: Sequence[str], outcomes: dict[str, ItemOutcome]) -> list[ItemReport]:
    """Reports of the failed items and of those that needed retries, in item order."""
    return reports_of([outcomes[item] for item in items])


def reports_of(ordered: Sequence[ItemOutcome]) -> list[ItemReport]:
    """Reports of the failed outcomes and of those that needed retries, in the order given."""
    reports: list[ItemReport] = []
    for outcome in ordered:
        if outcome.error is None and outcome.attempts <= 1:
            continue  # nearly every item: nothing to report
        attempts = outcome.attempts or (0 if outcome.cached else 1)
        if outcome.error is not None:
            reports.append(ItemReport(item=outcome.item, status="failed", attempts=attempts, error=outcome.error))
        else:
            reports.append(ItemReport(item=outcome.item, status="recovered", attempts=attempts))
    return reports


@dataclass(frozen=True)
class StageResult:
    """A run's output (`None` in each failed item's slot) and its failed items, as the status URL lists them."""

    output: list[Any]
    failures: list[dict[str, Any]]


def stage_result(
    ordered: Sequence[ItemOutcome],
    instance_id: str,
    tolerated_count: int = 0,
    tolerated_percentage: float = 0,
    output: list[Any] | None = None,
) -> StageResult:
    """The run's output and failed items from its outcomes in item order, or `ItemsFailed` beyond the threshold.

    `output`: the outcomes' values, when the caller has them already (every item succeeded).
    The item report is published whichever way the run ends, and always, even
    with no rows: a report marks a run that finished every item. A failing run
    publishes it before raising (the status URL takes its failures from it),
    a completing one after its final state.
    """
    reports = reports_of(ordered)
    failed = [report for report in reports if report.status == "failed"]
    total = len(ordered)
    allowed = allowed_failures(total, tolerated_count, tolerated_percentage)
    if len(failed) > allowed:
        publish_report(reports, instance_id, total=total, allowed=allowed)
        raise ItemsFailed([(report.item, report.error or "") for report in failed], total=total)
    after_final_state(functools.partial(publish_report, reports, instance_id, total=total, allowed=allowed))
    if output is None:
        output = [outcome.value if outcome.error is None else None for outcome in ordered]
    return StageResult(output=output, failures=[report.model_dump() for report in failed])


def report_key(instance_id: str) -> str:
    """An artifact key for the instance: lowercase letters, digits and dashes, collision-free."""
    slug = re.sub(r"[^a-z0-9]+", "-", instance_id.lower()).strip("-")[:60]
    digest = hashlib.sha256(instance_id.encode()).hexdigest()[:8]
    return f"{REPORT_KEY_PREFIX}{slug}-{digest}" if slug else f"{REPORT_KEY_PREFIX}{digest}"


def publish_report(reports: list[ItemReport], instance_id: str, total: int, allowed: int) -> None:
    """Publish the item report as a table artifact of the current flow run."""
    from prefect.artifacts import create_table_artifact

    failed = sum(report.status == "failed" for report in reports)
    create_table_artifact(  # type: ignore[call-arg]
        [report.model_dump() for report in reports],
        key=report_key(instance_id),
        description=(
            f"instance {instance_id}: {failed} of {total} items failed "
            f"({allowed} tolerated); {len(reports) - failed} recovered after retries"
        ),
        _sync=True,  # also from an async flow's wrap-up, on its event loop
    )


async def read_item_report(client: Any, flow_run_id: UUID) -> list[ItemReport] | None:
    """The latest item report a flow run published (empty when nothing failed or retried),
    or None when it published none (it ended before settling its items).

    `client` is a `PrefectClient`; the status API calls this with its own.
    """
    from prefect.client.schemas.filters import ArtifactFilterKey

    rows = await latest_table_rows(client, flow_run_id, ArtifactFilterKey(like_=f"{REPORT_KEY_PREFIX}%"))
    return None if rows is None else [ItemReport.model_validate(row) for row in rows]


async def read_failed_items(client: Any, flow_run_id: UUID) -> list[dict[str, Any]] | None:
    """The failed items (item, attempts, last error) of a flow run's item report, or None when
    it published none: what the status URL lists as `failures`."""
    reports = await read_item_report(client, flow_run_id)
    if reports is None:
        return None
    return [report.model_dump() for report in reports if report.status == "failed"]

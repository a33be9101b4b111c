"""The end-of-run report a person reads in the Prefect UI: a table of items, with the run's metrics above it.

The table is keyed by instance, so the UI keeps each instance's history. Its description holds the
summary and the metrics (markdown, which the UI renders): one artifact per run, not two, since each
artifact costs the server a write and two events. Past `report_table_limit` items the table lists only
the failures, to keep the artifact small. Nothing the status URL answers depends on it, so it is
published after the final state.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from prefect.artifacts import create_table_artifact

from fanout.core.outcome import ItemOutcome
from fanout.engine.item_logging import correlation_id

if TYPE_CHECKING:
    from prefect.client.schemas.filters import ArtifactFilterKey

logger = logging.getLogger(__name__)

KEY_PREFIX = "fanout-run"


def artifact_key(instance_id: str, kind: str) -> str:
    """`fanout-run-<instance>-<kind>` in the lowercase letters, digits and dashes Prefect accepts."""
    slug = re.sub(r"[^a-z0-9]+", "-", instance_id.lower()).strip("-") or "instance"
    return f"{KEY_PREFIX}-{slug}-{kind}"


@dataclass(frozen=True)
class RunMetrics:
    """Aggregate figures of one run."""

    items: int
    succeeded: int
    cached: int
    failed: int
    retried: int
    p50_seconds: float | None
    p95_seconds: float | None
    wall_seconds: float

    @property
    def items_per_second(self) -> float:
        return self.items / self.wall_seconds if self.wall_seconds > 0 else 0.0


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (`fraction` in 0..1) of `values`, None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def run_metrics(outcomes: Sequence[ItemOutcome], wall_seconds: float) -> RunMetrics:
    """Items, successes, failures, retries and duration percentiles of `outcomes`, counted in one pass."""
    durations: list[float] = []
    cached = failed = retried = 0
    for outcome in outcomes:
        if outcome.duration is not None:
            durations.append(outcome.duration)
        if outcome.error is not None:
            failed += 1
        if outcome.cached:
            cached += 1
        if outcome.attempts > 1:
            retried += 1
    durations.sort()  # once: each percentile's own sort then finds it in order
    return RunMetrics(
        items=len(outcomes),
        succeeded=len(outcomes) - failed,
        cached=cached,
        failed=failed,
        retried=retried,
        p50_seconds=percentile(durations, 0.50),
        p95_seconds=percentile(durations, 0.95),
        wall_seconds=wall_seconds,
    )


def item_row(scope: str, outcome: ItemOutcome) -> dict[str, Any]:
    """One table row: what happened to the item and the id its log lines carry."""
    return {
        "item": outcome.item,
        "status": outcome.status,
        "attempts": outcome.attempts,
        "duration_s": None if outcome.duration is None else round(outcome.duration, 4),
        "correlation_id": correlation_id(scope, outcome.item),
        "error": outcome.error or "",
    }


def table_rows(scope: str, outcomes: Sequence[ItemOutcome], limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Rows for the table artifact and whether every item is listed (else: failures only, capped);
    `scope` precedes each item in its correlation id (the instance, or `<instance>/<stage>`)."""
    if len(outcomes) <= limit:
        return [item_row(scope, outcome) for outcome in outcomes], True
    failures = [outcome for outcome in outcomes if outcome.error is not None]  # not `ok`, without a property call
    return [item_row(scope, outcome) for outcome in failures[:limit]], False


def summary_line(metrics: RunMetrics) -> str:
    """One sentence with the run's counts."""
    return (
        f"{metrics.items} items: {metrics.succeeded} succeeded ({metrics.cached} from checkpoints), "
        f"{metrics.failed} failed, {metrics.retried} retried"
    )


def metrics_markdown(instance_id: str, metrics: RunMetrics) -> str:
    """The metrics artifact's body: a two-column markdown table."""

    def seconds(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.4f} s"

    rows = [
        ("items", str(metrics.items)),
        ("succeeded", f"{metrics.succeeded} ({metrics.cached} from checkpoints)"),
        ("failed", str(metrics.failed)),
        ("retried", str(metrics.retried)),
        ("p50 item duration", seconds(metrics.p50_seconds)),
        ("p95 item duration", seconds(metrics.p95_seconds)),
        ("wall time", f"{metrics.wall_seconds:.3f} s"),
        ("items/s", f"{metrics.items_per_second:.1f}"),
    ]
    lines = [f"### fan-out-fan-in: instance `{instance_id}`", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines) + "\n"


def report_description(instance_id: str, metrics: RunMetrics, complete: bool, limit: int) -> str:
    """The table's description: the summary line (saying when only failures are listed), then the metrics table."""
    summary = summary_line(metrics)
    if not complete:
        summary = f"{summary}. Listing failures only (at most {limit}): the run has more than {limit} items."
    return f"{summary}\n\n{metrics_markdown(instance_id, metrics)}"


def publish_report(instance_id: str, outcomes: Sequence[ItemOutcome], wall_seconds: float, limit: int) -> RunMetrics:
    """Create this run's item table, its description holding the metrics; a failure to publish is logged, not raised.

    The report describes the run; losing it must not fail a run whose items all succeeded.
    `instance_id` is what precedes each item in its correlation id: the instance, or
    `<instance>/<stage>` for a stage whose ids name it (each stage then has a table of its own).
    """
    metrics = run_metrics(outcomes, wall_seconds)
    rows, complete = table_rows(instance_id, outcomes, limit)
    try:
        # `_sync`: the wrap-up of an async flow runs on its event loop, where Prefect would hand back coroutines.
        create_table_artifact(  # type: ignore[call-arg]
            table=rows,
            key=artifact_key(instance_id, "items"),
            description=report_description(instance_id, metrics, complete, limit),
            _sync=True,
        )
    except Exception as error:  # noqa: BLE001 - the report is not worth failing the run for
        logger.warning("could not publish the run report for instance %s: %s", instance_id, error)
    return metrics


async def latest_table_rows(client: Any, flow_run_id: UUID, key: ArtifactFilterKey) -> list[dict[str, Any]] | None:
    """The rows of the newest table artifact of `flow_run_id` whose key matches `key`, or None when it has none.

    `client` is a `PrefectClient`. Prefect hands a table's data back as JSON text (or, from some servers, as
    the rows themselves).
    """
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType
    from prefect.client.schemas.sorting import ArtifactSort

    artifacts = await client.read_artifacts(
        artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), key=key, type=ArtifactFilterType(any_=["table"])
        ),
        sort=ArtifactSort.CREATED_DESC,
        limit=1,
    )
    if not artifacts:
        return None
    data = artifacts[0].data
    rows = json.loads(data) if isinstance(data, str) else data
    return [dict(row) for row in rows] if isinstance(rows, list) else None

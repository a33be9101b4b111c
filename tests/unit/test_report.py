"""The end-of-run report: keys, rows, the size cutoff and the metrics."""

from __future__ import annotations

import re

from fanout.core.outcome import ItemOutcome
from fanout.engine.report import (
    artifact_key,
    metrics_markdown,
    percentile,
    report_description,
    run_metrics,
    table_rows,
)


def outcomes() -> list[ItemOutcome]:
    return [
        ItemOutcome(item="item-1", value="a", attempts=1, duration=0.1),
        ItemOutcome(item="item-2", value="b", attempts=2, duration=0.3),
        ItemOutcome(item="item-3", error="ValueError: broken", attempts=1, duration=0.2),
        ItemOutcome(item="item-4", value="d", cached=True),
    ]


def test_artifact_keys_use_only_lowercase_letters_digits_and_dashes() -> None:
    """Any instance id becomes a key Prefect accepts."""
    key = artifact_key("Nightly_2026.11-29", "items")
    assert key == "fanout-run-nightly-2026-11-29-items"
    assert re.fullmatch(r"[a-z0-9-]+", key)


def test_nearest_rank_percentiles() -> None:
    """p50 and p95 are values that occurred, by nearest rank; none without values."""
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.95) == 95.0
    assert percentile([], 0.5) is None


def test_metrics_count_successes_failures_retries_and_cached_items() -> None:
    """Cached items count as succeeded; only measured items feed the percentiles."""
    metrics = run_metrics(outcomes(), wall_seconds=2.0)
    assert (metrics.items, metrics.succeeded, metrics.cached, metrics.failed, metrics.retried) == (4, 3, 1, 1, 1)
    assert metrics.p50_seconds == 0.2
    assert metrics.p95_seconds == 0.3
    assert metrics.items_per_second == 2.0


def test_rows_list_status_attempts_duration_and_correlation_id() -> None:
    """Under the limit every item has a row that names its correlation id."""
    rows, complete = table_rows("nightly", outcomes(), limit=10)
    assert complete
    assert rows[1] == {
        "item": "item-2",
        "status": "completed",
        "attempts": 2,
        "duration_s": 0.3,
        "correlation_id": "nightly/item-2",
        "error": "",
    }
    assert [row["status"] for row in rows] == ["completed", "completed", "failed", "cached"]
    assert rows[3]["duration_s"] is None


def test_past_the_limit_only_failures_are_listed() -> None:
    """A run larger than the limit lists its failures, not every item."""
    rows, complete = table_rows("nightly", outcomes(), limit=3)
    assert not complete
    assert [row["item"] for row in rows] == ["item-3"]


def test_metrics_markdown_names_every_figure() -> None:
    """The metrics table shows items, succeeded, failed, retried, p50, p95 and items/s."""
    text = metrics_markdown("nightly", run_metrics(outcomes(), wall_seconds=2.0))
    for name in ("items", "succeeded", "failed", "retried", "p50 item duration", "p95 item duration", "items/s"):
        assert f"| {name} |" in text
    assert "| items/s | 2.0 |" in text


def test_the_table_description_holds_the_summary_then_the_metrics() -> None:
    """One artifact per run: its description opens with the summary line, the metrics table follows."""
    metrics = run_metrics(outcomes(), wall_seconds=2.0)
    description = report_description("nightly", metrics, complete=False, limit=3)
    summary, _, rest = description.partition("\n\n")
    assert summary.startswith("4 items:") and "Listing failures only (at most 3)" in summary
    assert rest == metrics_markdown("nightly", metrics)

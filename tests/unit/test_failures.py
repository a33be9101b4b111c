"""Failure thresholds and the item report, without Prefect."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fanout.core.outcome import ItemOutcome
from fanout.engine.failures import allowed_failures, item_reports, report_key
from fanout.inputs.request import FanoutRequest


@pytest.mark.parametrize(
    "total, count, percentage, allowed",
    [(10, 0, 0, 0), (10, 3, 0, 3), (10, 0, 20, 2), (10, 3, 20, 2), (10, 1, 50, 1), (7, 0, 50, 3), (200, 0, 100, 200)],
)
def test_allowed_failures_is_the_stricter_of_the_set_limits(
    total: int, count: int, percentage: float, allowed: int
) -> None:
    """A threshold at 0 is unset; with both set the stricter wins; none set tolerates nothing."""
    assert allowed_failures(total, count, percentage) == allowed


@pytest.mark.parametrize(
    "fields",
    [
        {"tolerated_failure_count": -1},
        {"tolerated_failure_percentage": -0.1},
        {"tolerated_failure_percentage": 100.5},
        {"tolerated_failure_count": "3"},
        {"tolerated_failure_count": 1.5},
    ],
)
def test_bad_thresholds_are_rejected(fields: dict[str, object]) -> None:
    """Negative, over-100% or non-integer thresholds are invalid input."""
    with pytest.raises(ValidationError):
        FanoutRequest(**fields)  # type: ignore[arg-type]


def test_thresholds_default_to_zero() -> None:
    """By default no failure is tolerated, as in the seed."""
    request = FanoutRequest()
    assert (request.tolerated_failure_count, request.tolerated_failure_percentage) == (0, 0)


def test_item_report_lists_failed_and_retried_items_in_order() -> None:
    """Failed items and items that needed retries are reported with attempts; others are not."""
    outcomes = {
        "a": ItemOutcome(item="a", value=1, attempts=1),
        "b": ItemOutcome(item="b", error="ValueError: b is broken", attempts=1),
        "c": ItemOutcome(item="c", value=3, attempts=3),
        "d": ItemOutcome(item="d", value=4, cached=True),
    }
    reports = item_reports(["a", "b", "c", "d"], outcomes)
    assert [(r.item, r.status, r.attempts, r.error) for r in reports] == [
        ("b", "failed", 1, "ValueError: b is broken"),
        ("c", "recovered", 3, None),
    ]


def test_a_fresh_item_without_counted_attempts_ran_once() -> None:
    """An item outcome that carries no attempt count reports one attempt; a checkpointed one none."""
    outcomes = {"x": ItemOutcome(item="x", error="E"), "y": ItemOutcome(item="y", value=1, cached=True)}
    assert [(r.item, r.attempts) for r in item_reports(["x", "y"], outcomes)] == [("x", 1)]


@pytest.mark.parametrize("instance", ["Nightly_2026.11.29", "x", "A-B", "...."])
def test_report_key_is_a_valid_artifact_key(instance: str) -> None:
    """Keys use only lowercase letters, digits and dashes, and differ per instance."""
    key = report_key(instance)
    assert all(ch.islower() or ch.isdigit() or ch == "-" for ch in key)
    assert report_key(instance) != report_key(instance + "x")


def test_items_failed_survives_prefects_json_result_round_trip() -> None:
    """A Failed run's stored ItemsFailed is read back by Prefect's JSON serializer with its message."""
    from prefect.serializers import JSONSerializer

    from fanout.core.errors import ItemsFailed

    serializer = JSONSerializer()
    error = ItemsFailed([("bad", "ValueError: bad is broken")], total=1)
    restored = serializer.loads(serializer.dumps(error))
    assert isinstance(restored, ItemsFailed)
    assert str(restored) == "1 of 1 items failed: bad: ValueError: bad is broken"

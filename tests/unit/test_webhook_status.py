"""How Prefect states and labels become the seed's runtimeStatus and customStatus."""

from __future__ import annotations

import pytest

from fanout.service.status import (
    CustomStatus,
    RuntimeStatus,
    custom_status,
    reported_failures,
    requested_total,
    runtime_status,
)


@pytest.mark.parametrize(
    "state_type, expected",
    [
        (None, RuntimeStatus.PENDING),
        ("SCHEDULED", RuntimeStatus.PENDING),
        ("PENDING", RuntimeStatus.PENDING),
        ("RUNNING", RuntimeStatus.RUNNING),
        ("CANCELLING", RuntimeStatus.RUNNING),
        ("PAUSED", RuntimeStatus.SUSPENDED),
        ("COMPLETED", RuntimeStatus.COMPLETED),
        ("FAILED", RuntimeStatus.FAILED),
        ("CRASHED", RuntimeStatus.FAILED),
        ("CANCELLED", RuntimeStatus.TERMINATED),
    ],
)
def test_prefect_state_types_map_to_the_seeds_statuses(state_type: str | None, expected: RuntimeStatus) -> None:
    """Every Prefect state type has its seed status."""
    assert runtime_status(state_type) is expected


def test_custom_status_before_the_flow_published_is_unknown_total() -> None:
    """A run whose flow has not published progress yet has no total."""
    assert custom_status({"fanout.instance": "x"}) == CustomStatus(total=None, completed=0, failed=0)


LAGGING_LABELS = {"fanout.total": 10_000, "fanout.completed": 5_694, "fanout.failed": 0}


def test_a_reported_run_counts_from_its_item_report_not_lagging_labels() -> None:
    """Completed with two failed items reported: every other item counts as done, whatever the labels last said."""
    failed = reported_failures("COMPLETED", [{"item": "item-3"}, {"item": "item-9"}])
    assert custom_status(LAGGING_LABELS, 10_000, failed) == CustomStatus(total=10_000, completed=9_998, failed=2)


def test_a_reported_run_has_its_total_even_without_labels() -> None:
    """The total of a run with an item report comes from its request: a label update refused by a busy API loses nothing."""
    total = requested_total({"request": {"count": 5, "instance_id": "i"}})
    assert custom_status(None, total, reported_failures("COMPLETED", [])) == CustomStatus(
        total=5, completed=5, failed=0
    )
    assert requested_total({"request": {"items": ["a", "b"]}}) == 2 and requested_total({}) == 5


@pytest.mark.parametrize("state_type, failures", [("CRASHED", []), ("FAILED", None), ("RUNNING", [])])
def test_a_run_without_a_report_keeps_the_labels_count(state_type: str, failures: list[dict[str, str]] | None) -> None:
    """A crashed run, a run that failed before settling (no report) or a running one shows its labels."""
    failed = reported_failures(state_type, failures)
    assert custom_status(LAGGING_LABELS, 10_000, failed) == CustomStatus(total=10_000, completed=5_694, failed=0)

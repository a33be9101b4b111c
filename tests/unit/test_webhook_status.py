"""How Prefect states and labels become the seed's runtimeStatus and customStatus."""

from __future__ import annotations

import pytest

from deployments.status import CustomStatus, RuntimeStatus, custom_status, runtime_status


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

"""A Prefect global concurrency limit caps items in flight; a missing one is refused before any item runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

from fanout.core.errors import InvalidRequest
from fanout.inputs.request import FanoutRequest
from fanout.seed import fan_out_fan_in
from tests.support.processors import RECORDER


@pytest.fixture
def limit_of_two() -> Iterator[str]:
    """A global concurrency limit with 2 slots on the test server, deleted afterwards."""
    name = f"items-{uuid.uuid4().hex[:8]}"
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=2))
        yield name
        client.delete_global_concurrency_limit_by_name(name)


@pytest.mark.parametrize("count", [6, 150], ids=["per-item", "batched"])
def test_the_global_limit_caps_items_below_max_parallel(
    monkeypatch: pytest.MonkeyPatch, limit_of_two: str, count: int
) -> None:
    """With 8 threads but a limit of 2 slots, never more than 2 items run at once."""
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.processors:recorded")
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "8")
    monkeypatch.setenv("FANOUT_CPU_BOUND_PROCESSES", "false")  # the recorder counts items on these threads
    monkeypatch.setenv("FANOUT_CONCURRENCY_LIMIT", limit_of_two)
    monkeypatch.setenv("FANOUT_SLOT_HOLD_SECONDS", "0.2")
    monkeypatch.setenv("FANOUT_BATCH_SIZE", "1" if count < 10 else "10")
    RECORDER.reset()
    assert fan_out_fan_in(FanoutRequest(count=count)) == [f"Processed item-{i}" for i in range(1, count + 1)]
    assert RECORDER.started == count and 1 <= RECORDER.peak <= 2


def test_the_global_limit_caps_async_items_below_max_parallel(
    monkeypatch: pytest.MonkeyPatch, limit_of_two: str
) -> None:
    """An async processor with 50 items in flight allowed, under a limit of 2 slots, never runs more than 2."""
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.workload_processors:recorded_async")
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "50")
    monkeypatch.setenv("FANOUT_CONCURRENCY_LIMIT", limit_of_two)
    monkeypatch.setenv("FANOUT_SLOT_HOLD_SECONDS", "0.2")
    RECORDER.reset()
    assert fan_out_fan_in(FanoutRequest(count=60)) == [f"Processed item-{i}" for i in range(1, 61)]
    assert RECORDER.started == 60 and 1 <= RECORDER.peak <= 2


def test_a_limit_that_does_not_exist_is_refused_before_any_item_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Naming a global limit nobody created fails the run at once, saying how to create it."""
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.processors:recorded")
    monkeypatch.setenv("FANOUT_CONCURRENCY_LIMIT", "no-such-limit")
    RECORDER.reset()
    with pytest.raises(InvalidRequest, match="prefect gcl create no-such-limit"):
        fan_out_fan_in(FanoutRequest(count=3))
    assert RECORDER.started == 0

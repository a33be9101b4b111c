"""What a person reads in the Prefect UI after a run: the item table, the metrics, tagged log lines."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from fanout.core.errors import ItemsFailed
from fanout.engine.report import artifact_key
from fanout.inputs.request import FanoutRequest
from fanout.seed import fan_out_fan_in


def latest_artifact(key: str) -> Any:
    """The newest artifact stored under `key`."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])), sort=ArtifactSort.CREATED_DESC, limit=1
        )
    assert found, f"no artifact {key}"
    return found[0]


def table(instance: str) -> list[dict[str, Any]]:
    data = latest_artifact(artifact_key(instance, "items")).data
    return json.loads(data) if isinstance(data, str) else data


def metrics(instance: str) -> str:
    """The metrics the item table's description holds."""
    return str(latest_artifact(artifact_key(instance, "items")).description)


def fresh_instance(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("count", [5, 150], ids=["per-item", "batched"])
def test_table_lists_every_item_with_status_attempts_duration_and_correlation_id(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path, count: int
) -> None:
    """Each item has a row; a retried item shows 2 attempts; durations are measured."""
    monkeypatch.setenv("FANOUT_TEST_FLAKY", "item-3")
    instance = fresh_instance("table")
    fan_out_fan_in(FanoutRequest(count=count, instance_id=instance))
    rows = table(instance)
    assert [row["item"] for row in rows] == [f"item-{i}" for i in range(1, count + 1)]
    assert {row["status"] for row in rows} == {"completed"}
    assert rows[2]["attempts"] == 2
    assert rows[0]["attempts"] == 1
    assert all(row["duration_s"] is not None and row["duration_s"] >= 0 for row in rows)
    assert rows[2]["correlation_id"] == f"{instance}/item-3"
    assert "| retried | 1 |" in metrics(instance)


def test_the_item_table_belongs_to_its_flow_run_when_the_call_returns(execution_log: Path) -> None:
    """The table, written alongside the item report in the wrap-up, is stored under the run's id before the flow returns."""
    instance = fresh_instance("owned")
    state = fan_out_fan_in(FanoutRequest(count=3, instance_id=instance), return_state=True)
    assert latest_artifact(artifact_key(instance, "items")).flow_run_id == state.state_details.flow_run_id


def test_a_failed_run_still_reports_its_failures(monkeypatch: pytest.MonkeyPatch, execution_log: Path) -> None:
    """When items fail the artifacts are published before the run fails, naming the error."""
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-2")
    instance = fresh_instance("failing")
    with pytest.raises(ItemsFailed):
        fan_out_fan_in(FanoutRequest(count=5, instance_id=instance))
    failed = [row for row in table(instance) if row["status"] == "failed"]
    assert [(row["item"], row["error"]) for row in failed] == [("item-2", "ValueError: item-2 is broken")]
    assert "| failed | 1 |" in metrics(instance)


def test_rerun_reports_items_from_checkpoints_as_cached(execution_log: Path) -> None:
    """A rerun of a finished instance shows every item as cached, none executed."""
    instance = fresh_instance("rerun")
    fan_out_fan_in(FanoutRequest(count=5, instance_id=instance))
    fan_out_fan_in(FanoutRequest(count=5, instance_id=instance))
    assert {row["status"] for row in table(instance)} == {"cached"}
    assert "| succeeded | 5 (5 from checkpoints) |" in metrics(instance)


def test_past_the_table_limit_only_failures_are_listed(monkeypatch: pytest.MonkeyPatch, execution_log: Path) -> None:
    """A run with more items than `report_table_limit` lists only its failures, summary in the description."""
    monkeypatch.setenv("FANOUT_REPORT_TABLE_LIMIT", "3")
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-4")
    instance = fresh_instance("large")
    with pytest.raises(ItemsFailed):
        fan_out_fan_in(FanoutRequest(count=5, instance_id=instance))
    assert [row["item"] for row in table(instance)] == ["item-4"]
    description = latest_artifact(artifact_key(instance, "items")).description
    assert description.startswith("5 items: 4 succeeded (0 from checkpoints), 1 failed")


class Captured(logging.Handler):
    """Keeps the records Prefect's task-run logger emits."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def task_run_lines() -> Iterator[list[logging.LogRecord]]:
    handler = Captured()
    logger = logging.getLogger("prefect.task_runs")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)


@pytest.mark.parametrize("count", [5, 150], ids=["per-item", "batched"])
def test_processor_log_lines_carry_the_correlation_id(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path, task_run_lines: list[logging.LogRecord], count: int
) -> None:
    """A processor's `item_logger()` lines name instance and item, also on a retried attempt."""
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.processors:chatty")
    monkeypatch.setenv("FANOUT_TEST_FLAKY", "item-3")
    instance = fresh_instance("logs")
    fan_out_fan_in(FanoutRequest(count=count, instance_id=instance))
    working = [r.getMessage() for r in task_run_lines if r.getMessage().endswith("working on it")]
    assert len(working) == count + 1
    assert working.count(f"[{instance}/item-3] working on it") == 2
    assert all(getattr(r, "correlation_id", None) for r in task_run_lines if "working on it" in r.getMessage())


def test_prefects_own_task_run_lines_carry_the_correlation_id(
    execution_log: Path, task_run_lines: list[logging.LogRecord]
) -> None:
    """The engine's per-item lines ("Finished in state ...") are tagged with the item's correlation id."""
    instance = fresh_instance("engine")
    fan_out_fan_in(FanoutRequest(count=3, instance_id=instance))
    finished = [r.getMessage() for r in task_run_lines if "Finished in state" in r.getMessage()]
    assert sorted(finished) == [f"[{instance}/item-{i}] Finished in state Completed()" for i in range(1, 4)]

"""Log lines about an item carry its correlation id."""

from __future__ import annotations

import logging

import pytest

from fanout.core.item_context import processing
from fanout.engine.item_logging import CorrelationFilter, item_logger


def test_item_logger_prefixes_and_tags_each_line(caplog: pytest.LogCaptureFixture) -> None:
    """Inside a processor call, the item logger writes `[<instance>/<item>]` and sets correlation_id."""
    caplog.set_level(logging.INFO, logger="fanout.items")
    with processing("nightly", "item-3", attempt=1):
        item_logger().info("fetched %d rows", 7)
    [record] = caplog.records
    assert record.getMessage() == "[nightly/item-3] fetched 7 rows"
    assert record.correlation_id == "nightly/item-3"  # type: ignore[attr-defined]


def test_item_logger_outside_a_processor_call_says_so() -> None:
    """Asking for the item logger with no item running is an error, not a silent untagged logger."""
    with pytest.raises(LookupError):
        item_logger()


def test_filter_leaves_lines_outside_a_task_run_alone() -> None:
    """With no running task the filter changes nothing."""
    record = logging.LogRecord("prefect.task_runs", logging.INFO, __file__, 1, "hello", None, None)
    assert CorrelationFilter().filter(record)
    assert record.getMessage() == "hello"
    assert not hasattr(record, "correlation_id")


def test_a_runs_filter_tags_only_its_own_flow_runs_lines() -> None:
    """A task-run line written outside its task (its final state) is tagged by the filter of its own run only."""
    record = logging.LogRecord("prefect.task_runs", logging.INFO, __file__, 1, "Finished", None, None)
    record.flow_run_id, record.task_run_name, record.task_name = "run-2", "process_item-item-3", "process_item"
    assert CorrelationFilter("run-1", "nightly").filter(record) and not hasattr(record, "correlation_id")
    assert CorrelationFilter("run-2", "weekly").filter(record)
    assert record.getMessage() == "[weekly/item-3] Finished"

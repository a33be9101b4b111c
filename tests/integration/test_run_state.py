"""Run state belongs to the run: two flow runs in one process keep their own progress, attempts and report."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from fanout.inputs.request import FanoutRequest
from fanout.seed import fan_out_fan_in
from tests.integration.test_report import metrics, table


def test_two_runs_in_one_process_share_no_state(monkeypatch: pytest.MonkeyPatch, execution_log: Path) -> None:
    """Concurrent runs on threads of one process each report their own items, attempts and retries."""
    monkeypatch.setenv("FANOUT_TEST_FLAKY", "a-3,b-3")
    monkeypatch.setenv("FANOUT_TEST_SLEEP_MAX", "0.01")
    first, second = f"state-a-{uuid.uuid4().hex[:6]}", f"state-b-{uuid.uuid4().hex[:6]}"
    outputs: dict[str, Any] = {}

    def run(instance: str, prefix: str, count: int) -> None:
        items = [f"{prefix}-{i}" for i in range(1, count + 1)]
        outputs[instance] = fan_out_fan_in(FanoutRequest(items=items, instance_id=instance))

    threads = [
        threading.Thread(target=run, args=(first, "a", 150)),
        threading.Thread(target=run, args=(second, "b", 120)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outputs == {
        first: [f"Processed a-{i}" for i in range(1, 151)],
        second: [f"Processed b-{i}" for i in range(1, 121)],
    }
    assert "| items | 150 |" in metrics(first) and "| items | 120 |" in metrics(second)
    assert "| retried | 1 |" in metrics(first) and "| retried | 1 |" in metrics(second)
    assert [row["attempts"] for row in table(first)].count(2) == 1
    assert {row["correlation_id"].split("/")[0] for row in table(second)} == {second}

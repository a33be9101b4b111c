"""A deployment run on worker processes: the warm worker's flow-run process forks the item workers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from fanout.localstack.processes import Child
from tests.support.stacks import poll_until_finished


def test_a_deployment_run_on_worker_processes_completes(
    webhook: httpx.Client, start_worker: Callable[..., Child]
) -> None:
    """POST a 300-item start to a worker whose runs use FANOUT_TASK_RUNNER=process: 200, every result in order."""
    start_worker(FANOUT_TASK_RUNNER="process", FANOUT_PROCESSES="2")
    started = webhook.post("/api/start-fanout", json={"count": 300})
    assert started.status_code == 202, started.text
    done = poll_until_finished(webhook, started.headers["location"])
    body: dict[str, Any] = done.json()
    assert done.status_code == 200 and body["runtimeStatus"] == "Completed", done.text
    assert body["output"] == [f"Processed item-{i}" for i in range(1, 301)]

"""The warm worker notices a backlog: a poll that found more scheduled runs than it had free slots."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prefect.workers.base import BaseWorker

from fanout.worker.warm_worker import FanoutWarmWorker


def polled(monkeypatch: pytest.MonkeyPatch, found: int, taken: int) -> FanoutWarmWorker:
    """A worker after one poll that found `found` scheduled runs and submitted `taken` of them."""

    async def scheduled(self: BaseWorker[Any, Any, Any]) -> list[object]:
        return [object() for _ in range(found)]

    async def submit(self: BaseWorker[Any, Any, Any], flow_run_response: list[object]) -> list[object]:
        return flow_run_response[:taken]

    monkeypatch.setattr(BaseWorker, "_get_scheduled_flow_runs", scheduled)
    monkeypatch.setattr(BaseWorker, "_submit_scheduled_flow_runs", submit)
    worker = FanoutWarmWorker(work_pool_name="fanout")
    worker._has_successfully_synced = True
    asyncio.run(worker.get_and_submit_flow_runs())
    return worker


def test_a_poll_that_leaves_runs_for_lack_of_slots_marks_a_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs left scheduled after every free slot was taken: each run that ends polls again at once."""
    assert polled(monkeypatch, found=12, taken=10)._backlog


def test_a_poll_that_takes_every_run_marks_no_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every scheduled run found was submitted: ended runs wait for the next event or poll, as before."""
    assert not polled(monkeypatch, found=3, taken=3)._backlog

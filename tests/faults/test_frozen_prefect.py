"""The Prefect server frozen (SIGSTOP): the webhook's health check and status answer 503 in bounded time."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import httpx
import pytest

from tests.support.fault_stack import FaultStack

pytestmark = pytest.mark.faults

HEALTH_PATIENCE = 5.0
"""A client's timeout for /health: a webhook still waiting on the frozen server fails the test."""
STATUS_PATIENCE = 30.0
"""A client's timeout for a status poll, well under the minute the webhook once held it."""


@pytest.fixture
def frozen(stack: FaultStack) -> Iterator[None]:
    """The stack's Prefect server stopped with SIGSTOP, and always resumed after the test."""
    assert stack.local.server is not None and stack.local.server.child is not None
    group = stack.local.server.child.process.pid
    os.killpg(group, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(group, signal.SIGCONT)


def test_health_is_503_with_the_reason_while_prefect_is_frozen(
    stack: FaultStack, webhook: httpx.Client, frozen: None
) -> None:
    """`/health` gives up on the frozen server by itself and says why."""
    answer = webhook.get("/health", timeout=HEALTH_PATIENCE)
    assert answer.status_code == 503
    assert "did not answer in time" in answer.json()["detail"]


def test_a_status_poll_is_503_with_retry_after_while_prefect_is_frozen(
    stack: FaultStack, webhook: httpx.Client, frozen: None
) -> None:
    """A status GET spends its read budget on the frozen server, then answers 503 with Retry-After."""
    answer = webhook.get("/api/instances/frozen-poll", timeout=STATUS_PATIENCE)
    assert answer.status_code == 503 and "retry-after" in answer.headers, answer.text


def test_health_is_200_again_once_prefect_resumes(stack: FaultStack, webhook: httpx.Client) -> None:
    """Once the server runs again, the same webhook is healthy."""
    assert webhook.get("/health", timeout=HEALTH_PATIENCE).status_code == 200

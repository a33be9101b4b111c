"""Which item failures are retried, and how long to wait between attempts."""

from __future__ import annotations

import random
from typing import Any

from prefect.tasks import exponential_backoff

from flows.errors import TransientError
from flows.settings import FanoutSettings

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError)
"""Retried: fanout's own `TransientError`, and network failures (`ConnectionError`, `TimeoutError`).
Everything else is a bug or bad data, and fails the item at once."""


def is_transient(error: BaseException | None) -> bool:
    """True for an error worth another attempt."""
    return isinstance(error, TRANSIENT_ERRORS)


def retry_delays(settings: FanoutSettings) -> list[float]:
    """Base delays before each retry: `retry_delay_seconds` doubled every attempt."""
    return exponential_backoff(settings.retry_delay_seconds)(settings.retries)


def jittered(delay: float, jitter_factor: float) -> float:
    """A delay spread like Prefect's `retry_jitter_factor`: up to `delay * (1 + factor)`."""
    if delay <= 0 or jitter_factor <= 0:
        return delay
    return random.uniform(delay, delay * (1 + jitter_factor))


def retry_transient_only(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect `retry_condition_fn`: retry a task run only when its error is transient."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as error:  # noqa: BLE001 - we classify, not handle
        return is_transient(error)
    return False

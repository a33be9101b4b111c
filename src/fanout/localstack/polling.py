"""Waiting for a condition in tests: poll it until a deadline, never sleep a guessed time.

A fixed `sleep` is either too short on a loaded machine (a flaky test) or too
long everywhere else (a slow one); polling returns as soon as the condition
holds and fails with a message naming what never happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """The first truthy value `condition()` returns, polling every `interval` seconds;
    TimeoutError naming `what` (and the last value seen) if none came within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:g}s (last: {value!r})")
        time.sleep(interval)

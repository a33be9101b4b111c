"""Which item failures are retried, and how: one policy, carried out by stamina.

Transient errors are retried with exponential backoff and jitter; anything else fails the item at
once. A Prefect `@task` brings its own policy. Retries are per item, not per task run, so an item in
a batch is retried like one in its own task run.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import stamina

from fanout.core.errors import TransientError
from fanout.core.settings import FlowSettings

T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (TransientError, ConnectionError, TimeoutError)
"""Retried: fanout's own `TransientError`, and network failures (`ConnectionError`, `TimeoutError`).
Everything else is a bug or bad data, and fails the item at once."""

MAX_WAIT_SECONDS = 3600.0


def is_transient(error: BaseException | None) -> bool:
    """True for an error worth another attempt."""
    return isinstance(error, TRANSIENT_ERRORS)


@dataclass(frozen=True)
class RetryPolicy:
    """How many retries an item gets and how long it waits before each (picklable, for Dask workers)."""

    retries: int = 3
    delay_seconds: float = 1.0
    jitter_factor: float = 0.5
    retry_on: tuple[type[Exception], ...] = TRANSIENT_ERRORS
    """The errors worth another attempt."""

    @classmethod
    def from_settings(cls, settings: FlowSettings) -> RetryPolicy:
        return cls(settings.retries, settings.retry_delay_seconds, settings.retry_jitter_factor)

    @classmethod
    def of_task(cls, retries: int | None, delay: Any, jitter_factor: float | None) -> RetryPolicy:
        """A Prefect task's retry settings as a policy: any exception retried `retries` times; a list
        of delays gives the first, which then doubles; no jitter factor, none."""
        delays = list(delay) if isinstance(delay, (list, tuple)) else [delay]
        first = float(delays[0]) if delays and delays[0] is not None else 0.0
        return cls(retries or 0, first, jitter_factor or 0.0, (Exception,))

    def will_retry(self, error: BaseException, attempt: int) -> bool:
        """Whether a failure of attempt number `attempt` (1-based) is followed by another attempt."""
        return attempt <= self.retries and isinstance(error, self.retry_on)

    def call(self, attempt: Callable[[], T]) -> T:
        """`attempt()`, retried as the policy says; the last error is raised.

        The first call is made directly: nearly every item succeeds at once, and
        entering stamina's retry loop (a tenacity `Retrying` per call) costs about
        as much as the rest of a trivial item's bookkeeping.
        """
        try:
            return attempt()
        except Exception as error:  # noqa: BLE001 - re-raised unless the policy retries it
            first = error
        return self.retry_after(first, attempt)

    def retry_after(self, first: Exception, attempt: Callable[[], T]) -> T:
        """Go on after a first attempt that failed with `first`: `attempt()` again as the policy says,
        or `first` raised when it is not worth retrying; the last error is raised.

        `first` is handed to stamina as its first attempt, so the waits, jitter and
        attempt count are stamina's.
        """
        if not self.will_retry(first, 1):
            raise first
        pending: Exception | None = first
        for trial in self._trials():
            with trial:
                if pending is not None:
                    failed, pending = pending, None
                    raise failed
                return attempt()
        raise AssertionError("stamina ends its loop by returning or raising")  # pragma: no cover

    async def acall(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """`call` for an async processor: the same policy, its waits awaited on the event loop."""
        try:
            return await attempt()
        except Exception as error:
            if not self.will_retry(error, 1):
                raise
            first: Exception | None = error
        async for trial in self._trials():
            with trial:
                if first is not None:
                    failed, first = first, None
                    raise failed
                return await attempt()
        raise AssertionError("stamina ends its loop by returning or raising")  # pragma: no cover

    def _trials(self) -> Any:
        """stamina's attempts after the first, as the policy says (iterated with `for` or `async for`)."""
        return stamina.retry_context(
            on=self.retry_on,
            attempts=self.retries + 1,
            timeout=None,
            wait_initial=self.delay_seconds,
            wait_max=MAX_WAIT_SECONDS,
            wait_jitter=self.delay_seconds * self.jitter_factor,
            wait_exp_base=2,
        )

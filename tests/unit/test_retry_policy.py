"""Which errors are retried, how long between attempts, and the per-item retry loop."""

from __future__ import annotations

import pytest

from flows.errors import TransientError
from flows.retry_policy import is_transient, jittered, retry_delays
from flows.settings import FanoutSettings
from flows.tasks import attempt_item


def settings(**fields: object) -> FanoutSettings:
    return FanoutSettings(_env_file=None, retry_delay_seconds=0, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize("error", [TransientError("x"), ConnectionError("x"), TimeoutError("x")])
def test_named_transient_errors_are_retried(error: Exception) -> None:
    """TransientError and network errors count as transient."""
    assert is_transient(error)


@pytest.mark.parametrize("error", [ValueError("x"), KeyError("x"), RuntimeError("x")])
def test_bugs_are_not_retried(error: Exception) -> None:
    """Any other error is permanent."""
    assert not is_transient(error)


def test_delays_double_from_the_first() -> None:
    """Retry delays grow exponentially from `retry_delay_seconds`."""
    assert retry_delays(FanoutSettings(_env_file=None, retries=4, retry_delay_seconds=0.5)) == [0.5, 1, 2, 4]


def test_jitter_stays_within_its_factor() -> None:
    """A jittered delay lies between the delay and delay * (1 + factor)."""
    assert all(2.0 <= jittered(2.0, 0.5) <= 3.0 for _ in range(200))


def test_transient_failure_is_retried_until_success() -> None:
    """An item that fails transiently twice succeeds on its third attempt."""
    calls: list[str] = []

    def flaky(item: str) -> str:
        calls.append(item)
        if len(calls) < 3:
            raise TransientError("blip")
        return item.upper()

    outcome = attempt_item(flaky, "a", settings(retries=3), "i1")
    assert (outcome.value, outcome.attempts, outcome.error) == ("A", 3, None)


def test_permanent_failure_is_not_retried() -> None:
    """A bug fails the item on its first attempt, with the error named."""
    def broken(item: str) -> str:
        raise ValueError("bad data")

    outcome = attempt_item(broken, "a", settings(retries=3), "i1")
    assert (outcome.attempts, outcome.error) == (1, "ValueError: bad data")


def test_retries_are_bounded() -> None:
    """A transient error that never clears stops after `retries` retries."""
    def always(item: str) -> str:
        raise TransientError("down")

    outcome = attempt_item(always, "a", settings(retries=2), "i1")
    assert (outcome.attempts, outcome.error) == (3, "TransientError: down")

"""What happened to one item: its value, or its last error, and how many attempts it took."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class ItemOutcome:
    """The fate of one item in one run.

    A plain dataclass: one is built per item (100,000 in a large run), and a
    pydantic model's validation cost more than the rest of the bookkeeping.
    """

    item: str
    value: Any = None
    error: str | None = None
    attempts: int = 0
    cached: bool = False
    duration: float | None = None
    """Seconds spent in the processor over all attempts in this run; None when not measured."""

    @property
    def ok(self) -> bool:
        """True when the item has a result (fresh or from a checkpoint)."""
        return self.error is None

    @property
    def status(self) -> str:
        """`cached` (from a checkpoint), `completed` (ran now) or `failed`."""
        if not self.ok:
            return "failed"
        return "cached" if self.cached else "completed"


def describe(error: BaseException) -> str:
    """A one-line description of an error for reports: type and message."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__

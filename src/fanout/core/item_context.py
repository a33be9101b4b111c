"""What a processor can learn about the item it is running: instance, stage, item, attempt, idempotency key.

Delivery is at-least-once: an item that was running when its host died runs
again. A processor with side effects reads `current_item().idempotency_key`
(`<instance_id>/<stage>/<item>`, or `<instance_id>/<item>` for a stage that
leaves its name out of ids, as the seed's does; the same on every attempt and
every restart of the instance) to deduplicate them downstream.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Self


@dataclass(frozen=True)
class ItemContext:
    """The item being processed, as seen from inside the processor."""

    instance_id: str
    item: str
    attempt: int
    stage: str | None = None
    """The `durable_map` stage the item belongs to, when ids name it."""

    @property
    def idempotency_key(self) -> str:
        """Stable across attempts and restarts of the same instance: `<instance_id>/<stage>/<item>`
        (`<instance_id>/<item>` when ids leave the stage out)."""
        if self.stage is None:
            return f"{self.instance_id}/{self.item}"
        return f"{self.instance_id}/{self.stage}/{self.item}"

    @property
    def correlation_id(self) -> str:
        """The id that ties log lines, task runs and reports to this item (same as the key)."""
        return self.idempotency_key


ItemFields = tuple[str, str, int, str | None]
"""An `ItemContext`'s fields in order: instance, item, attempt, stage."""

_current: ContextVar[ItemFields | None] = ContextVar("fanout_item", default=None)


def current_item() -> ItemContext:
    """The item the calling processor is running; raises outside a processor call."""
    fields = _current.get()
    if fields is None:
        raise LookupError("current_item() is only available inside a fanout processor call")
    return ItemContext(*fields)


def entering(instance_id: str, item: str, attempt: int, stage: str | None = None) -> Token[ItemFields | None]:
    """Make `current_item()` answer for one processor call, until `leaving(token)`.

    The item path enters it once per attempt of every item, so it holds the
    fields alone: the `ItemContext` is made only when asked for (by the
    processor, or to log a failed attempt), and most processors never ask.
    """
    return _current.set((instance_id, item, attempt, stage))


def leaving(token: Token[ItemFields | None]) -> None:
    """End what `entering` began."""
    _current.reset(token)


class processing:  # lowercase, as it reads like a function: `with processing(instance, item, attempt) as active:`
    """`entering` and `leaving` as a context manager, with the item's context at hand."""

    __slots__ = ("_fields", "_token")

    def __init__(self, instance_id: str, item: str, attempt: int, stage: str | None = None) -> None:
        self._fields: ItemFields = (instance_id, item, attempt, stage)
        self._token: Token[ItemFields | None] | None = None

    @property
    def context(self) -> ItemContext:
        """The item being processed."""
        return ItemContext(*self._fields)

    def __enter__(self) -> Self:
        self._token = _current.set(self._fields)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _current.reset(self._token)

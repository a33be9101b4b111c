"""A Prefect global concurrency limit that caps items in flight across every run and worker.

Every thread or coroutine that runs items holds one slot of `FANOUT_CONCURRENCY_LIMIT` while it does,
so slots in use are items in flight. A slot is kept across items for at most
`FANOUT_SLOT_HOLD_SECONDS`: one API round trip per hold rather than per item, and a lowered limit
still binds within about that long.
"""

from __future__ import annotations

import time
from contextlib import AbstractAsyncContextManager, AbstractContextManager, AsyncExitStack, ExitStack
from types import TracebackType
from typing import Self

from prefect.concurrency.asyncio import concurrency as async_concurrency
from prefect.concurrency.sync import concurrency

from fanout.core.errors import InvalidRequest
from fanout.core.settings import FlowSettings


class ItemSlot:
    """One slot of the global limit, held by a thread while it runs items.

    Call `before_item()` before each item: it (re)acquires the slot when not
    held, and releases and re-acquires it once held longer than `hold_seconds`.
    Without a limit name every call is free and nothing is held.
    """

    def __init__(self, limit_name: str | None, hold_seconds: float) -> None:
        self.limit_name = limit_name
        self.hold_seconds = hold_seconds
        self._held: ExitStack | None = None
        self._since = 0.0

    @classmethod
    def from_settings(cls, settings: FlowSettings) -> ItemSlot:
        return cls(settings.concurrency_limit, settings.slot_hold_seconds)

    def before_item(self) -> None:
        """Make sure this thread holds a fresh enough slot to start one item."""
        if self.limit_name is None:
            return
        if self._held is not None and time.monotonic() - self._since >= self.hold_seconds:
            self.release()
        if self._held is None:
            self._held = ExitStack()
            self._held.enter_context(_slot(self.limit_name))
            self._since = time.monotonic()

    def release(self) -> None:
        """Give the slot back (between items, and when the batch ends)."""
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()


class AsyncItemSlot:
    """`ItemSlot` for one coroutine of an async task run: awaited, on the run's event loop."""

    def __init__(self, limit_name: str | None, hold_seconds: float) -> None:
        self.limit_name = limit_name
        self.hold_seconds = hold_seconds
        self._held: AsyncExitStack | None = None
        self._since = 0.0

    async def before_item(self) -> None:
        """Make sure this coroutine holds a fresh enough slot to start one item."""
        if self.limit_name is None:
            return
        if self._held is not None and time.monotonic() - self._since >= self.hold_seconds:
            await self.release()
        if self._held is None:
            held = AsyncExitStack()
            await held.enter_async_context(_async_slot(self.limit_name))
            self._held, self._since = held, time.monotonic()

    async def release(self) -> None:
        """Give the slot back (between items, and when the coroutine runs out of items)."""
        held, self._held = self._held, None
        if held is not None:
            await held.aclose()


def check_limit(settings: FlowSettings) -> None:
    """Fail before any item runs when the configured global concurrency limit does not exist."""
    if settings.concurrency_limit is None:
        return
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(settings.concurrency_limit)
        except ObjectNotFound:
            raise InvalidRequest(
                f"global concurrency limit {settings.concurrency_limit!r} does not exist: "
                f"create it with `prefect gcl create {settings.concurrency_limit} --limit N`"
            ) from None


def _slot(limit_name: str) -> AbstractContextManager[None]:
    """One slot of `limit_name`; a limit that does not exist is an error, not a silent no-op."""
    return concurrency(limit_name, occupy=1, strict=True)


def _async_slot(limit_name: str) -> AbstractAsyncContextManager[None]:
    """One slot of `limit_name`, awaited."""
    return async_concurrency(limit_name, occupy=1, strict=True)

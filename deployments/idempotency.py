"""Idempotency-Key handling: which keys are accepted, and how a body is compared with the first one.

Prefect's own flow-run idempotency key makes concurrent repeats create one run,
but it ignores parameters. The webhook therefore stores a digest of the body
(the client's fields, before an instance id is generated) on the run, and a
repeat whose digest differs is refused with 409.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from flows.request import FanoutRequest

T = TypeVar("T")

KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,128}$")
"""1..128 visible ASCII characters: safe in a header, a filter and a label."""


class BadIdempotencyKey(ValueError):
    """The Idempotency-Key header is empty, too long or has characters outside visible ASCII."""


def checked_key(raw: str | None) -> str | None:
    """The header's key, None when absent, or `BadIdempotencyKey`."""
    if raw is None:
        return None
    if not KEY_PATTERN.match(raw):
        raise BadIdempotencyKey("Idempotency-Key must be 1..128 visible ASCII characters")
    return raw


def request_digest(request: FanoutRequest) -> str:
    """A stable digest of the fields the client sent (field order and spacing do not matter)."""
    canonical = json.dumps(request.model_dump(mode="json", exclude_defaults=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


class StartsByKey(Generic[T]):
    """Starts that carry one Idempotency-Key, done one at a time in this webhook process.

    Fifty concurrent POSTs with one key used to send fifty lookups and creations
    to the Prefect API at once, and on SQLite a third of them outlasted the
    webhook's deadline (503). Now the first does the API work; the others wait
    for it and reuse its run for `remember_seconds`. Past that, or in another
    webhook process, Prefect's own idempotency key still leads a repeat to the
    one run.
    """

    def __init__(self, remember_seconds: float = 30.0, capacity: int = 1024) -> None:
        self._remember = remember_seconds
        self._capacity = capacity
        self._locks: dict[str, asyncio.Lock] = {}
        self._recent: OrderedDict[str, tuple[float, T]] = OrderedDict()

    async def start(self, key: str, start: Callable[[], Awaitable[T]]) -> T:
        """The run `start()` gave for `key` moments ago, or a new call of it; one call per key at a time."""
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            recent = self._recent.get(key)
            if recent is not None and time.monotonic() - recent[0] < self._remember:
                return recent[1]
            result = await start()
            self._remember_result(key, result)
            return result

    def _remember_result(self, key: str, result: T) -> None:
        self._recent[key] = (time.monotonic(), result)
        self._recent.move_to_end(key)
        while len(self._recent) > self._capacity:
            forgotten, _ = self._recent.popitem(last=False)
            lock = self._locks.get(forgotten)
            if lock is not None and not lock.locked():
                del self._locks[forgotten]

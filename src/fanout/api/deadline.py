"""A time budget for the Prefect API calls made while answering one request.

A frozen Prefect server takes connections and never answers; without a budget a status request would
wait out every call's timeout and retry. Within `bounded(s)` each call gets at most what is left of the
`s` seconds as its httpx timeouts, and a call that would start past the budget is not sent
(`PrefectUnavailable`, 503), so nothing is cancelled from outside.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from fanout.service.webhook_errors import PrefectUnavailable

_deadline: contextvars.ContextVar[tuple[float, float] | None] = contextvars.ContextVar(
    "fanout_prefect_deadline", default=None
)


@contextmanager
def bounded(seconds: float) -> Iterator[None]:
    """Prefect calls sent in this block (and in tasks it starts) end within `seconds` from now."""
    token = _deadline.set((time.monotonic() + seconds, seconds))
    try:
        yield
    finally:
        _deadline.reset(token)


async def within_deadline(request: httpx.Request) -> None:
    """httpx request hook: trim the request's timeouts to what is left of the budget, if one is set."""
    bound = _deadline.get()
    if bound is None:
        return
    deadline, seconds = bound
    remaining = deadline - time.monotonic()
    if remaining <= 0.01:
        raise PrefectUnavailable(f"Prefect API did not answer within {seconds:g} s")
    timeouts = request.extensions.get("timeout") or {}
    request.extensions["timeout"] = {
        phase: remaining if limit is None else min(limit, remaining)
        for phase, limit in {"connect": None, "read": None, "write": None, "pool": None, **timeouts}.items()
    }

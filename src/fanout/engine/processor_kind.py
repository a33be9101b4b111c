"""What kind of processor a run was given, and whether what it returned can be kept.

A processor must be a plain or `async def` function, checked before any item runs, since anything
else would not give one result per item. A result that is not JSON fails its item, unretried.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, Literal

from fanout.core.errors import ProcessorNotFound

ProcessorKind = Literal["sync", "async"]


class InvalidProcessor(ProcessorNotFound):
    """The processor is neither a function nor a coroutine function."""


def processor_kind(function: Callable[..., Any], name: str = "processor") -> ProcessorKind:
    """`async` for a coroutine function (or an object whose `__call__` is one), `sync` for any other
    function; `InvalidProcessor` for generators, classes and what cannot be called."""
    target: Any = function
    while isinstance(target, functools.partial):
        target = target.func
    if inspect.isclass(target):
        raise InvalidProcessor(f"{name} is a class; name a function that takes an item and returns its result")
    if not callable(target):
        raise InvalidProcessor(f"{name} is a {type(target).__name__}, not a function")
    call = target if inspect.isroutine(target) else getattr(target, "__call__", target)  # noqa: B004
    if inspect.isgeneratorfunction(call) or inspect.isasyncgenfunction(call):
        raise InvalidProcessor(f"{name} is a generator function; a processor returns one result per item")
    return "async" if inspect.iscoroutinefunction(call) else "sync"


MAX_THREADS = 512
"""Sync processors run on threads, one per item in flight; beyond this many, an `async def` processor fits."""


def check_parallel(kind: ProcessorKind, max_parallel: int) -> None:
    """`InvalidProcessor` when a sync processor asks for more threads than `MAX_THREADS`."""
    if kind == "sync" and max_parallel > MAX_THREADS:
        raise InvalidProcessor(
            f"max_parallel {max_parallel} needs an async processor: sync processors run on at most {MAX_THREADS} threads"
        )

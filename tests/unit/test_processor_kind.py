"""Processor kinds are told apart before items run, and results that are not JSON fail their item."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from fanout.core.errors import ProcessorNotFound
from fanout.engine.processor_kind import (
    InvalidProcessor,
    check_parallel,
    processor_kind,
)


def plain(item: Any) -> Any:
    return item


async def awaited(item: Any) -> Any:
    return item


def generator(item: Any) -> Iterator[Any]:
    yield item


async def async_generator(item: Any) -> AsyncIterator[Any]:
    yield item


class AsyncCallable:
    async def __call__(self, item: Any) -> Any:
        return item


def test_plain_function_is_sync() -> None:
    """A plain function runs on threads."""
    assert processor_kind(plain) == "sync"


def test_coroutine_function_is_async() -> None:
    """An `async def` function runs on the event loop, also behind a partial or as a callable object."""
    assert processor_kind(awaited) == "async"
    assert processor_kind(functools.partial(awaited)) == "async"
    assert processor_kind(AsyncCallable()) == "async"


@pytest.mark.parametrize("bad", [generator, async_generator, AsyncCallable, 42])
def test_generators_classes_and_values_are_refused(bad: Any) -> None:
    """Anything that does not return one result per call is an invalid processor (exit 2)."""
    with pytest.raises(InvalidProcessor) as raised:
        processor_kind(bad)
    assert isinstance(raised.value, ProcessorNotFound)


def test_sync_processor_is_limited_to_512_threads() -> None:
    """More than 512 in flight needs an async processor; async may go to 10,000."""
    check_parallel("sync", 512)
    check_parallel("async", 10_000)
    with pytest.raises(InvalidProcessor, match="needs an async processor"):
        check_parallel("sync", 513)

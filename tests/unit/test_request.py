"""The input model and item planning: what is accepted, and every way input is refused."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fanout.core.errors import InvalidRequest
from fanout.inputs.request import FanoutRequest, plan_items


def test_default_request_is_the_seeds_five_items() -> None:
    """No input gives item-1 .. item-5."""
    assert plan_items(FanoutRequest(), 100) == [f"item-{i}" for i in range(1, 6)]


def test_count_generates_items_in_order() -> None:
    """`count` N gives item-1 .. item-N."""
    assert plan_items(FanoutRequest(count=3), 100) == ["item-1", "item-2", "item-3"]


def test_explicit_items_keep_their_order() -> None:
    """An explicit list is run as given."""
    assert plan_items(FanoutRequest(items=["b", "a"]), 100) == ["b", "a"]


@pytest.mark.parametrize(
    "fields",
    [
        {"count": 2, "items": ["a"]},
        {"items": [1, 2], "source": {"uri": "a.jsonl"}},
        {"count": 2, "item_key": "id"},
        {"source": {"uri": "a.jsonl", "format": "xml"}},
        {"items": "abc"},
        {"count": "5"},
        {"count": 2.5},
        {"instance_id": "has space"},
        {"instance_id": "../escape"},
        {"unknown": 1},
    ],
)
def test_malformed_requests_fail_validation(fields: dict[str, Any]) -> None:
    """Wrong types, both count and items, unsafe instance ids and unknown fields are refused."""
    with pytest.raises(ValidationError):
        FanoutRequest(**fields)


@pytest.mark.parametrize(
    "request_, message",
    [
        (FanoutRequest(count=0), "at least 1"),
        (FanoutRequest(count=-3), "at least 1"),
        (FanoutRequest(count=101), "exceeds max_items"),
        (FanoutRequest(items=[]), "at least 1"),
        (FanoutRequest(items=["a", "b", "a"]), "more than once: 'a' at 0, 2"),
        (FanoutRequest(items=[{"id": 1}, {"name": "x"}], item_key="id"), "no 'id' field"),
    ],
)
def test_unrunnable_requests_are_refused_with_a_reason(request_: FanoutRequest, message: str) -> None:
    """Sizes out of range, duplicates and unprintable items raise InvalidRequest saying why."""
    with pytest.raises(InvalidRequest, match=message):
        plan_items(request_, 100)

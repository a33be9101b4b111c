"""The flow's one input model, and how it becomes the ordered list of items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fanout.core.errors import InvalidRequest
from fanout.inputs.items import (
    MAX_ITEM_BYTES,
    ItemValues,
    JsonValue,
    check_nesting,
    check_unicode,
    plan,
    split,
)
from fanout.inputs.sources import ItemSource, iter_source

INSTANCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ITEM_KEY_PATTERN = r"^[^\s]{1,128}$"
LARGEST_COUNT = 10_000_000
"""No run has more items than the largest FANOUT_MAX_ITEMS, so no count in a request is larger."""


class FanoutRequest(BaseModel):
    """What to fan out: `count` generated items, an explicit `items` list or a `source`, in one instance.

    One structured input keeps the flow's signature stable as fields are added,
    and Prefect renders it as a form in the UI.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int | None = Field(
        None, strict=True, le=LARGEST_COUNT, description="Generate item-1 .. item-N (5 when nothing is given)."
    )
    items: list[JsonValue] | None = Field(
        None, description="Explicit items, in order: any JSON values (strings, objects, numbers, lists)."
    )
    item_key: str | None = Field(
        None,
        pattern=ITEM_KEY_PATTERN,
        description="Field of an object item that identifies it; without it, the digest of the item's canonical JSON.",
    )
    source: ItemSource | None = Field(
        None,
        description="Where to read the items: `{uri, format}` (jsonl, json, csv, lines) or `{generator, params}`.",
    )
    instance_id: str | None = Field(
        None,
        pattern=INSTANCE_ID_PATTERN,
        description="Orchestration instance; checkpoints are shared within it. Defaults to the flow run id.",
    )
    tolerated_failure_count: int = Field(
        0,
        ge=0,
        le=LARGEST_COUNT,
        strict=True,
        description="Failed items the run tolerates and still Completes (nulls in their slots); 0: none.",
    )
    tolerated_failure_percentage: float = Field(
        0,
        ge=0,
        le=100,
        description="Failed items tolerated, as a percentage of all items; 0: not set. With both set, the stricter wins.",
    )

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        """Every string of the request, in items, keys and values alike, must be valid Unicode, and items
        nest at most `MAX_NESTING` levels deep."""
        check_unicode(data)
        if isinstance(data, dict):
            check_nesting(data.get("items"))
        return data

    @model_validator(mode="after")
    def _one_kind_of_items(self) -> FanoutRequest:
        given = [name for name in ("count", "items", "source") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of `count`, `items` or `source`, not {' and '.join(given)}")
        if self.item_key is not None and self.count is not None:
            raise ValueError("`item_key` names a field of `items` or `source` items, not of counted ones")
        return self


DEFAULT_COUNT = 5


def item_count(request: FanoutRequest) -> int | None:
    """How many items the request plans, without checking them; None for a source (known once read)."""
    if request.source is not None:
        return None
    if request.items is not None:
        return len(request.items)
    return DEFAULT_COUNT if request.count is None else request.count


def plan_items(request: FanoutRequest, max_items: int, max_item_bytes: int = MAX_ITEM_BYTES) -> list[str]:
    """The keys of the request's items in order, or `InvalidRequest` saying what is wrong with them."""
    return plan_request(request, max_items, max_item_bytes)[0]


def plan_request(
    request: FanoutRequest,
    max_items: int,
    max_item_bytes: int = MAX_ITEM_BYTES,
    roots: Sequence[str] | None = None,
) -> tuple[list[str], ItemValues]:
    """The items as the run carries them: keys in order and the values that are not their key
    (src/fanout/inputs/items.py). A source is read here, streamed, once; with `roots`, only a file
    that lies under one of them when it is opened."""
    if request.source is not None:
        planned = plan(iter_source(request.source, max_item_bytes, roots), request.item_key, max_items)
        _check_size(len(planned), max_items, "number of items in the source")
        return split(planned)
    if request.items is None:
        count = DEFAULT_COUNT if request.count is None else request.count
        _check_size(count, max_items, "count")
        return [f"item-{index}" for index in range(1, count + 1)], ItemValues()
    _check_size(len(request.items), max_items, "number of items")
    return split(plan(request.items, request.item_key, max_items))


def _check_size(size: int, max_items: int, what: str) -> None:
    if size < 1:
        raise InvalidRequest(f"{what} must be at least 1, got {size}")
    if size > max_items:
        raise InvalidRequest(f"{what} {size} exceeds max_items {max_items}")

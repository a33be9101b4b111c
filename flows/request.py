"""The flow's one input model, and how it becomes the ordered list of items."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from flows.errors import InvalidRequest

INSTANCE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
ITEM_MAX_LENGTH = 1024


class FanoutRequest(BaseModel):
    """What to fan out: `count` generated items or an explicit `items` list, in one instance.

    One structured input keeps the flow's signature stable as fields are added,
    and Prefect renders it as a form in the UI.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int | None = Field(
        None, strict=True, description="Generate item-1 .. item-N (5 when nothing is given)."
    )
    items: list[StrictStr] | None = Field(None, description="Explicit item ids, in order.")
    instance_id: str | None = Field(
        None,
        pattern=INSTANCE_ID_PATTERN,
        description="Orchestration instance; checkpoints are shared within it. Defaults to the flow run id.",
    )
    tolerated_failure_count: int = Field(
        0, ge=0, strict=True,
        description="Failed items the run tolerates and still Completes (nulls in their slots); 0: none.",
    )
    tolerated_failure_percentage: float = Field(
        0, ge=0, le=100,
        description="Failed items tolerated, as a percentage of all items; 0: not set. With both set, the stricter wins.",
    )

    @model_validator(mode="after")
    def _count_or_items(self) -> FanoutRequest:
        if self.count is not None and self.items is not None:
            raise ValueError("give either `count` or `items`, not both")
        return self


DEFAULT_COUNT = 5


def item_count(request: FanoutRequest) -> int:
    """How many items the request plans, without checking them."""
    if request.items is not None:
        return len(request.items)
    return DEFAULT_COUNT if request.count is None else request.count


def plan_items(request: FanoutRequest, max_items: int) -> list[str]:
    """The request's items in order, or `InvalidRequest` saying what is wrong with them."""
    if request.items is None:
        count = item_count(request)
        _check_size(count, max_items, "count")
        return [f"item-{index}" for index in range(1, count + 1)]
    items = list(request.items)
    _check_size(len(items), max_items, "number of items")
    for item in items:
        if not item or len(item) > ITEM_MAX_LENGTH or not item.isprintable():
            raise InvalidRequest(
                f"item {item!r} must be 1..{ITEM_MAX_LENGTH} printable characters"
            )
    duplicates = sorted(item for item, seen in Counter(items).items() if seen > 1)
    if duplicates:
        raise InvalidRequest(f"duplicate items: {', '.join(duplicates[:10])}")
    return items


def _check_size(size: int, max_items: int, what: str) -> None:
    if size < 1:
        raise InvalidRequest(f"{what} must be at least 1, got {size}")
    if size > max_items:
        raise InvalidRequest(f"{what} {size} exceeds max_items {max_items}")

"""Reading a run's results a page at a time, in item order, while it runs and after it failed.

Each item's result is already its checkpoint; what a reader lacks is the order. So a run writes its
plan (the item keys in chunks, then `plan.json`) before any item starts, and its failed items when it
ends, and a page joins one or two plan chunks with the checkpoints of their keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from fanout.core.errors import InvalidRequest
from fanout.storage import checkpoint_format

PLAN_CHUNK = 1000
PLAN_CHUNK_PREFIX = "plan-keys-"
MAX_PAGE = 10_000
Status = Literal["completed", "failed", "pending"]


class NoResults(LookupError):
    """The instance has no plan: it is unknown, or it started before results were kept in order."""


@dataclass(frozen=True, slots=True)
class ResultRow:
    """One item's row on a results page."""

    index: int
    key: str
    status: Status
    result: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ResultsPage:
    """`items` in item order from `offset`, `total` items planned, `next` offset or None at the end."""

    items: list[ResultRow]
    total: int
    next: int | None

    def document(self) -> dict[str, Any]:
        """The JSON answer of `GET /api/instances/{id}/results`."""
        return {"items": [asdict(row) for row in self.items], "total": self.total, "next": self.next}


def chunk_name(number: int) -> str:
    """The name of the plan's chunk `number`."""
    return f"{PLAN_CHUNK_PREFIX}{number:07d}"


def encode_chunk(keys: Sequence[str]) -> bytes:
    """One plan chunk: each key as a record holds it, one per line."""
    return checkpoint_format.encoded_keys(keys)


def chunk_lines(data: bytes) -> list[bytes]:
    """A chunk's lines, each a key still JSON-encoded (what records hold)."""
    return data.split(b"\n")[:-1]


def decode_chunk(data: bytes) -> list[str]:
    """A chunk's keys."""
    return [json.loads(line) for line in chunk_lines(data)]


def chunks_of(offset: int, limit: int, total: int) -> range:
    """The numbers of the chunks holding items `offset .. offset+limit-1` (none past the end)."""
    end = min(offset + limit, total)
    if end <= offset:
        return range(0)
    return range(offset // PLAN_CHUNK, (end - 1) // PLAN_CHUNK + 1)


def check_window(offset: int, limit: int) -> None:
    """`InvalidRequest` (a 422) for a negative offset or a limit outside 1..MAX_PAGE."""
    if offset < 0:
        raise InvalidRequest(f"offset must be 0 or more, got {offset}")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be 1..{MAX_PAGE}, got {limit}")


def build_page(
    window: Sequence[str], offset: int, total: int, results: Mapping[str, Any], errors: Mapping[str, str]
) -> ResultsPage:
    """The page of the keys `window` (items `offset ..`): `results` of those with a checkpoint,
    `errors` of those the run gave up on; the rest are pending."""
    rows: list[ResultRow] = []
    for index, key in enumerate(window, start=offset):
        if key in results:
            rows.append(ResultRow(index=index, key=key, status="completed", result=results[key]))
        elif key in errors:
            rows.append(ResultRow(index=index, key=key, status="failed", error=errors[key]))
        else:
            rows.append(ResultRow(index=index, key=key, status="pending"))
    end = offset + len(window)
    return ResultsPage(items=rows, total=total, next=end if end < total else None)

"""Reading a run's results a page at a time, in item order, while it runs and after it failed.

Every finished item's result is already kept the moment it finishes: it is the
item's checkpoint. What a reader lacks is the order, so a run writes its plan
first, in the instance's folder (`<storage>/fanout/<instance>/`), before any item starts:

- `plan-keys`: one item key per line, in item order (written to a temporary
  name, then renamed, so a reader sees all of it or none);
- `plan.json`: `{"version": 1, "processor": ..., "total": N}`, naming the
  processor whose checkpoint folder holds the results;
- `failures.jsonl`: `{"key": ..., "error": ...}` per item the run gave up on,
  appended when the run settles.

A page is then:

1. the plan's keys `offset .. offset+limit` (one read of the plan file);
2. the checkpoints of just those keys (`finished`), and the last errors of the
   failed ones (`failed`), both given by the caller, who knows the checkpoint store;
3. one row per key: `{index, key, status, result, error}`, where status is
   `completed` (a checkpoint holds its result), `failed` (the run gave up on it)
   or `pending` (not finished yet).

`next` is the offset of the following page, or None after the last one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from flows.errors import InvalidRequest

PLAN_FILE = "plan-keys"
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


def write_plan(folder: str, keys: Sequence[str]) -> None:
    """Record the run's item keys in order, atomically: a reader sees the whole plan or none."""
    os.makedirs(folder, exist_ok=True)
    final = os.path.join(folder, PLAN_FILE)
    partial = f"{final}.{os.getpid()}.partial"
    with open(partial, "w", encoding="utf-8") as plan:
        plan.writelines(
            "".join(key + "\n" for key in keys[start : start + 10_000]) for start in range(0, len(keys), 10_000)
        )
    os.replace(partial, final)


def read_plan(folder: str) -> list[str]:
    """The plan's keys in order, or `NoResults`."""
    try:
        with open(os.path.join(folder, PLAN_FILE), encoding="utf-8") as plan:
            return plan.read().splitlines()
    except FileNotFoundError:
        raise NoResults("no results recorded for this instance") from None


def check_window(offset: int, limit: int) -> None:
    """`InvalidRequest` (a 422) for a negative offset or a limit outside 1..MAX_PAGE."""
    if offset < 0:
        raise InvalidRequest(f"offset must be 0 or more, got {offset}")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidRequest(f"limit must be 1..{MAX_PAGE}, got {limit}")


def read_page(
    keys: Sequence[str],
    offset: int,
    limit: int,
    finished: Callable[[Collection[str]], Mapping[str, Any]],
    failed: Mapping[str, str] | None = None,
) -> ResultsPage:
    """The page of `keys` at `offset`: `finished(page_keys)` gives the results of those that have a
    checkpoint, `failed` the last error of each item the run gave up on."""
    check_window(offset, limit)
    window = list(keys[offset : offset + limit])
    results = finished(set(window)) if window else {}
    errors = failed or {}
    rows: list[ResultRow] = []
    for index, key in enumerate(window, start=offset):
        if key in results:
            rows.append(ResultRow(index=index, key=key, status="completed", result=results[key]))
        elif key in errors:
            rows.append(ResultRow(index=index, key=key, status="failed", error=errors[key]))
        else:
            rows.append(ResultRow(index=index, key=key, status="pending"))
    end = offset + len(window)
    return ResultsPage(items=rows, total=len(keys), next=end if end < len(keys) else None)

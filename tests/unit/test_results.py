"""Results pages: item order from the plan, status from checkpoints and failures."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import pytest

from flows.errors import InvalidRequest
from flows.results import NoResults, read_page, read_plan, write_plan


def lookup(results: dict[str, Any]) -> Any:
    def finished(keys: Collection[str]) -> Mapping[str, Any]:
        return {key: results[key] for key in keys if key in results}

    return finished


def test_plan_round_trips_in_order(tmp_path: Path) -> None:
    """The plan file gives back the keys in their order."""
    keys = [f"item-{index}" for index in range(25_000)]
    write_plan(str(tmp_path / "instance"), keys)
    assert read_plan(str(tmp_path / "instance")) == keys


def test_missing_plan_is_no_results(tmp_path: Path) -> None:
    """An instance without a plan has no results to page."""
    with pytest.raises(NoResults):
        read_plan(str(tmp_path))


def test_page_marks_completed_failed_and_pending() -> None:
    """Each row's status says whether the item finished, failed or is still to run."""
    page = read_page(["a", "b", "c"], 0, 10, lookup({"a": {"v": 1}}), {"b": "ValueError: bad"})
    assert [(row.index, row.key, row.status, row.result, row.error) for row in page.items] == [
        (0, "a", "completed", {"v": 1}, None),
        (1, "b", "failed", None, "ValueError: bad"),
        (2, "c", "pending", None, None),
    ]
    assert page.next is None


def test_pages_follow_item_order_with_next_offsets() -> None:
    """`next` walks the plan page by page to its end."""
    keys = [f"k{index}" for index in range(7)]
    results = {key: index for index, key in enumerate(keys)}
    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        page = read_page(keys, offset, 3, lookup(results))
        seen.extend(row.result for row in page.items)
        offset = page.next
    assert seen == list(range(7))


def test_page_asks_only_for_its_own_keys() -> None:
    """Only the page's keys are looked up in the checkpoints."""
    asked: list[Collection[str]] = []

    def finished(keys: Collection[str]) -> Mapping[str, Any]:
        asked.append(keys)
        return {}

    read_page([f"k{index}" for index in range(100)], 40, 5, finished)
    assert asked == [{"k40", "k41", "k42", "k43", "k44"}]


def test_page_past_the_end_is_empty() -> None:
    """An offset past the last item gives an empty page and no next."""
    page = read_page(["a"], 5, 10, lookup({}))
    assert page.items == [] and page.next is None and page.total == 1


@pytest.mark.parametrize(("offset", "limit"), [(-1, 10), (0, 0), (0, 100_000)])
def test_bad_window_is_refused(offset: int, limit: int) -> None:
    """A negative offset or an out-of-range limit is a bad request."""
    with pytest.raises(InvalidRequest):
        read_page(["a"], offset, limit, lookup({}))


def test_document_has_the_contract_fields() -> None:
    """The JSON answer holds `items` rows with index, key, status, result, error, and `next`."""
    document = read_page(["a", "b"], 0, 1, lookup({"a": 1})).document()
    assert document["items"] == [{"index": 0, "key": "a", "status": "completed", "result": 1, "error": None}]
    assert document["next"] == 1

"""Results pages: plan chunks in item order, rows' status from checkpoints and failures."""

from __future__ import annotations

import pytest

from fanout.core.errors import InvalidRequest
from fanout.storage import checkpoint_format
from fanout.storage.results import (
    PLAN_CHUNK,
    build_page,
    check_window,
    chunk_lines,
    chunks_of,
    decode_chunk,
    encode_chunk,
)


def test_a_chunk_round_trips_its_keys_in_order() -> None:
    """A plan chunk gives back its keys, escapes and non-ASCII included."""
    keys = ["item-1", 'quote"and\\slash', "ünïcode", "new\nline"]
    assert decode_chunk(encode_chunk(keys)) == keys


def test_a_chunk_line_is_the_key_as_a_record_holds_it() -> None:
    """Each chunk line is byte for byte the key in a checkpoint record's body, so an index can match them."""
    for key in ("item-1", 'q"uote', "ünï"):
        line = chunk_lines(encode_chunk([key]))[0]
        assert b'{"key":' + line + b',"result":' in checkpoint_format.encode(key, 1)


def test_a_window_needs_only_the_chunks_that_hold_it() -> None:
    """Page 50 of 100 items reads one chunk; a window across a boundary reads two; past the end none."""
    assert chunks_of(4900, 100, 100_000) == range(4, 5)
    assert chunks_of(PLAN_CHUNK - 1, 2, 100_000) == range(2)
    assert chunks_of(5, 10, 5) == range(0)


def test_page_marks_completed_failed_and_pending() -> None:
    """Each row's status says whether the item finished, failed or is still to run."""
    page = build_page(["a", "b", "c"], 0, 3, {"a": {"v": 1}}, {"b": "ValueError: bad"})
    assert [(row.index, row.key, row.status, row.result, row.error) for row in page.items] == [
        (0, "a", "completed", {"v": 1}, None),
        (1, "b", "failed", None, "ValueError: bad"),
        (2, "c", "pending", None, None),
    ]
    assert page.next is None


def test_next_is_the_offset_after_the_page_until_the_end() -> None:
    """`next` points past the page, and is None once the page reaches the last item."""
    assert build_page(["k3", "k4"], 3, 7, {}, {}).next == 5
    assert build_page(["k5", "k6"], 5, 7, {}, {}).next is None


def test_page_past_the_end_is_empty() -> None:
    """An offset past the last item gives an empty page and no next."""
    page = build_page([], 5, 1, {}, {})
    assert page.items == [] and page.next is None and page.total == 1


@pytest.mark.parametrize(("offset", "limit"), [(-1, 10), (0, 0), (0, 100_000)])
def test_bad_window_is_refused(offset: int, limit: int) -> None:
    """A negative offset or an out-of-range limit is a bad request."""
    with pytest.raises(InvalidRequest):
        check_window(offset, limit)


def test_document_has_the_contract_fields() -> None:
    """The JSON answer holds `items` rows with index, key, status, result, error, and `next`."""
    document = build_page(["a"], 0, 2, {"a": 1}, {}).document()
    assert document["items"] == [{"index": 0, "key": "a", "status": "completed", "result": 1, "error": None}]
    assert document["next"] == 1

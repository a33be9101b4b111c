"""Requests of JSON items and sources become the run's keyed items, or are refused before anything starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from fanout.core.errors import InvalidRequest
from fanout.core.settings import get_settings
from fanout.inputs.admission import admit, planned_items
from fanout.inputs.items import ItemValues
from fanout.inputs.request import FanoutRequest, item_count, plan_items, plan_request
from fanout.inputs.sources import BadSource, ItemSource, SourceForbidden


def test_seed_strings_stay_plain_strings() -> None:
    """String items travel as themselves: the seed's output and names do not change."""
    items, values = plan_request(FanoutRequest(items=["item-1", "item-2"]), 10)
    assert items == ["item-1", "item-2"] and len(values) == 0


def test_object_items_with_item_key_are_keyed_by_that_field() -> None:
    """Object items travel under their `item_key` and carry their value to the processor."""
    items, values = plan_request(FanoutRequest(items=[{"id": 1, "url": "x"}, {"id": 2}], item_key="id"), 10)
    assert items == ["1", "2"] and values.of("1") == {"id": 1, "url": "x"}


def test_object_items_without_item_key_are_keyed_by_digest() -> None:
    """Without `item_key`, an object's key is its canonical digest."""
    [item], values = plan_request(FanoutRequest(items=[{"b": 1, "a": 2}]), 10)
    assert item.startswith("sha256-") and values.of(item) == {"b": 1, "a": 2}


def test_numbers_are_items() -> None:
    """Numbers are JSON items too."""
    items, values = plan_request(FanoutRequest(items=[1, 2.5]), 10)
    assert [values.of(item) for item in items] == [1, 2.5]


def test_source_items_are_read_in_order(tmp_path: Path) -> None:
    """A source's items are the run's items, in file order."""
    path = tmp_path / "rows.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b"}\n')
    items = plan_items(FanoutRequest(source=ItemSource(uri=str(path)), item_key="id"), 10)
    assert items == ["a", "b"]


def test_source_count_is_unknown_until_read(tmp_path: Path) -> None:
    """The status cannot know a source's size from the request alone."""
    assert item_count(FanoutRequest(source=ItemSource(uri=str(tmp_path / "x.jsonl")))) is None


def test_empty_source_is_refused(tmp_path: Path) -> None:
    """A source with no items cannot run."""
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(InvalidRequest, match="at least 1"):
        admit(FanoutRequest(source=ItemSource(uri=str(path))), get_settings(), over_http=False)


def test_admission_over_http_checks_the_roots(tmp_path: Path) -> None:
    """Over HTTP a source outside FANOUT_SOURCE_ROOTS is forbidden before it is opened."""
    settings = get_settings(source_roots=[str(tmp_path / "allowed")])
    with pytest.raises(SourceForbidden):
        admit(FanoutRequest(source=ItemSource(uri="/etc/hostname", format="lines")), settings, over_http=True)


def test_admission_from_the_cli_reads_local_files(tmp_path: Path) -> None:
    """The CLI's user may read their own files: no roots needed."""
    path = tmp_path / "ids.txt"
    path.write_text("a\nb\n")
    admit(FanoutRequest(source=ItemSource(uri=str(path))), get_settings(), over_http=False)


def test_admission_reports_a_malformed_source(tmp_path: Path) -> None:
    """A malformed source is refused at admission, naming the line."""
    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": 1}\nnot json\n')
    with pytest.raises(BadSource, match="line 2"):
        admit(FanoutRequest(source=ItemSource(uri=str(path))), get_settings(), over_http=False)


def test_generators_need_the_allow_list_from_the_cli_too() -> None:
    """A generator source is only ever an allowed one."""
    with pytest.raises(SourceForbidden):
        admit(FanoutRequest(source=ItemSource(generator="os:listdir")), get_settings(), over_http=False)


def test_item_values_pickle_with_the_run() -> None:
    """The values reach Dask workers with the run."""
    import pickle

    values = pickle.loads(pickle.dumps(ItemValues({"1": {"id": 1}})))
    assert values.of("1") == {"id": 1} and values.of("item-2") == "item-2"


def test_the_flow_reads_a_source_only_under_its_roots(tmp_path: Path) -> None:
    """Where the flow's process has FANOUT_SOURCE_ROOTS, a source that now leads outside them fails the run."""
    (tmp_path / "in").mkdir()
    (tmp_path / "outside.txt").write_text("secret\n")
    (tmp_path / "in" / "ids.txt").symlink_to(tmp_path / "outside.txt")
    request = FanoutRequest(source=ItemSource(uri=str(tmp_path / "in" / "ids.txt")))
    with pytest.raises(SourceForbidden, match="outside FANOUT_SOURCE_ROOTS"):
        planned_items(request, get_settings(source_roots=[str(tmp_path / "in")]))
    assert planned_items(request, get_settings())[0] != []  # a starter without roots reads its own files

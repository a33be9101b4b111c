"""Item sources: each format read through fsspec, streamed, with clear errors and access checks."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
from pydantic import ValidationError

from fanout.inputs.sources import (
    BadSource,
    ItemSource,
    SourceForbidden,
    check_allowed,
    iter_source,
)


def memory_file(content: bytes | str, suffix: str = "") -> str:
    """A fresh `memory://` URI holding `content`."""
    uri = f"memory://fanout-tests/{uuid.uuid4().hex}{suffix}"
    with fsspec.open(uri, "wb") as target:
        target.write(content.encode() if isinstance(content, str) else content)
    return uri


def read(uri: str, format: str | None = None, **kwargs: Any) -> list[Any]:
    return list(iter_source(ItemSource(uri=uri, format=format), **kwargs))  # type: ignore[arg-type]


def numbers(n: int) -> Iterator[dict[str, int]]:
    """A generator source for the tests."""
    for index in range(n):
        yield {"n": index}


def test_jsonl_gives_one_item_per_line() -> None:
    """jsonl: one JSON value per line; blank lines are skipped."""
    uri = memory_file('{"id": 1}\n\n"two"\n[3]\n')
    assert read(uri, "jsonl") == [{"id": 1}, "two", [3]]


def test_json_gives_the_array_elements() -> None:
    """json: the elements of one array, in order."""
    items = [{"id": index, "tags": ["a", "b"], "price": 12.5} for index in range(2000)] + [123456789, "x", None]
    uri = memory_file(json.dumps(items, indent=1))
    assert read(uri, "json") == items


def test_json_numbers_cut_at_a_chunk_edge_decode_whole() -> None:
    """A number split across read chunks is not decoded short."""
    uri = memory_file("[" + ",".join(str(10**12 + index) for index in range(20_000)) + "]")
    assert read(uri, "json") == [10**12 + index for index in range(20_000)]


def test_empty_json_array_has_no_items() -> None:
    """`[]` is a source with no items."""
    assert read(memory_file(" [ ] "), "json") == []


def test_csv_rows_become_objects_keyed_by_the_header() -> None:
    """csv: each row an object keyed by the header row."""
    uri = memory_file('id,name\n1,"Smith, J"\n2,Lee\n')
    assert read(uri, "csv") == [{"id": "1", "name": "Smith, J"}, {"id": "2", "name": "Lee"}]


def test_lines_give_string_items() -> None:
    """lines: one string per non-blank line."""
    assert read(memory_file("item-1\r\nitem-2\n\nitem-3"), "lines") == ["item-1", "item-2", "item-3"]


def test_format_defaults_from_the_suffix(tmp_path: Path) -> None:
    """A local path's suffix picks the format; plain paths and `file://` both work."""
    path = tmp_path / "rows.csv"
    path.write_text("a\n1\n")
    assert read(str(path)) == [{"a": "1"}]
    assert read(path.as_uri()) == [{"a": "1"}]


def test_malformed_jsonl_names_the_line() -> None:
    """A line that is not JSON is a bad source naming its line number."""
    with pytest.raises(BadSource, match="line 2: not JSON"):
        read(memory_file('{"id": 1}\n{oops\n'), "jsonl")


def test_malformed_json_array_is_refused() -> None:
    """A json source that is not one closed array is refused."""
    for text in ('{"a": 1}', "[1, 2", "[1, 2,]", "[1 2]", "[1] 2"):
        with pytest.raises(BadSource):
            read(memory_file(text), "json")


def test_csv_row_with_wrong_field_count_is_refused() -> None:
    """A CSV row with more or fewer fields than the header is refused."""
    with pytest.raises(BadSource, match="3 fields, the header has 2"):
        read(memory_file("a,b\n1,2\n1,2,3\n"), "csv")


def test_csv_without_header_is_refused() -> None:
    """An empty CSV has no header to key rows by."""
    with pytest.raises(BadSource, match="first row"):
        read(memory_file(""), "csv")


def test_missing_file_is_a_bad_source(tmp_path: Path) -> None:
    """A source that cannot be opened is a bad source naming its URI."""
    with pytest.raises(BadSource, match="cannot read source"):
        read(str(tmp_path / "missing.jsonl"))


def test_unknown_protocol_is_a_bad_source() -> None:
    """A protocol fsspec does not know is a bad source, not a crash."""
    with pytest.raises(BadSource):
        read("nosuchproto://bucket/items.jsonl")


def test_item_over_the_size_limit_is_refused() -> None:
    """An item larger than the limit is refused in every format."""
    big = json.dumps({"blob": "x" * 3000})
    with pytest.raises(BadSource, match="larger than 1024 bytes"):
        read(memory_file(big + "\n"), "jsonl", max_item_bytes=1024)
    with pytest.raises(BadSource, match="larger than 1024 bytes"):
        read(memory_file("[" + big + "]"), "json", max_item_bytes=1024)


def test_a_one_megabyte_item_is_accepted() -> None:
    """Items up to 1 MB are read whole."""
    item = {"blob": "x" * 999_000}
    assert read(memory_file(json.dumps(item) + "\n"), "jsonl") == [item]
    assert read(memory_file(json.dumps([item, 1])), "json") == [item, 1]


def test_source_under_a_root_is_allowed(tmp_path: Path) -> None:
    """A path under a configured root may be read."""
    check_allowed(ItemSource(uri=str(tmp_path / "in" / "a.jsonl")), [str(tmp_path / "in")], [])
    check_allowed(ItemSource(uri="s3://bucket/data/a.csv"), ["s3://bucket/data/"], [])


def test_source_outside_the_roots_is_forbidden(tmp_path: Path) -> None:
    """A path outside every root, or escaping one with `..`, is forbidden."""
    roots = [str(tmp_path / "in")]
    for uri in ("/etc/passwd", str(tmp_path / "in" / ".." / "secret.jsonl"), str(tmp_path / "inside.jsonl")):
        with pytest.raises(SourceForbidden, match="outside FANOUT_SOURCE_ROOTS"):
            check_allowed(ItemSource(uri=uri), roots, [])
    with pytest.raises(SourceForbidden):
        check_allowed(ItemSource(uri="s3://bucket/data/../other/a.csv"), ["s3://bucket/data"], [])


def test_symlink_out_of_a_root_is_forbidden(tmp_path: Path) -> None:
    """A symlink inside a root that points outside it is judged by its target."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "link.jsonl").symlink_to("/etc/hostname")
    with pytest.raises(SourceForbidden):
        check_allowed(ItemSource(uri=str(tmp_path / "in" / "link.jsonl")), [str(tmp_path / "in")], [])


def test_no_roots_means_no_uri_sources() -> None:
    """Without FANOUT_SOURCE_ROOTS no URI is accepted over HTTP."""
    with pytest.raises(SourceForbidden, match="no FANOUT_SOURCE_ROOTS"):
        check_allowed(ItemSource(uri="memory://x.jsonl"), [], [])


def test_generator_source_yields_its_items() -> None:
    """An allowed `module:function` generator is a source, with its params."""
    source = ItemSource(generator="tests.unit.test_sources:numbers", params={"n": 3})
    check_allowed(source, [], ["tests.unit.test_sources:numbers"])
    assert list(iter_source(source)) == [{"n": 0}, {"n": 1}, {"n": 2}]


def test_generator_outside_the_allow_list_is_forbidden() -> None:
    """A generator not in FANOUT_SOURCES is refused."""
    with pytest.raises(SourceForbidden, match="not in FANOUT_SOURCES"):
        check_allowed(ItemSource(generator="os:listdir"), [], ["tests.unit.test_sources:numbers"])


def test_source_needs_exactly_one_of_uri_or_generator() -> None:
    """A source names a URI or a generator, not both or neither."""
    with pytest.raises(ValidationError):
        ItemSource()
    with pytest.raises(ValidationError):
        ItemSource(uri="a.jsonl", generator="a:b")
    with pytest.raises(ValidationError):
        ItemSource(uri="a.jsonl", format="xml")  # type: ignore[arg-type]


def test_reading_is_streamed() -> None:
    """Items come out before the source is read to its end."""
    uri = memory_file("".join(f'{{"n": {index}}}\n' for index in range(100_000)))
    stream = iter_source(ItemSource(uri=uri))
    assert next(stream) == {"n": 0}
    stream.close()  # type: ignore[attr-defined]


def test_a_link_swapped_in_after_admission_is_not_read(tmp_path: Path) -> None:
    """A file admitted under a root, then replaced by a link to a file outside, fails when opened, unread."""
    roots = [str(tmp_path / "in")]
    (tmp_path / "in").mkdir()
    (tmp_path / "outside.jsonl").write_text('"secret"\n')
    path = tmp_path / "in" / "items.jsonl"
    path.write_text('"fine"\n')
    source = ItemSource(uri=str(path))
    check_allowed(source, roots, [])
    path.unlink()
    path.symlink_to(tmp_path / "outside.jsonl")
    with pytest.raises(SourceForbidden, match=r"outside\.jsonl.*outside FANOUT_SOURCE_ROOTS"):
        list(iter_source(source, roots=roots))


def test_a_folder_swapped_for_a_link_is_judged_by_where_it_leads(tmp_path: Path) -> None:
    """A folder on the path replaced by a link out of the root is caught like a linked file."""
    roots = [str(tmp_path / "in")]
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "items.jsonl").write_text('"secret"\n')
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "sub").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(SourceForbidden, match="outside FANOUT_SOURCE_ROOTS"):
        list(iter_source(ItemSource(uri=str(tmp_path / "in" / "sub" / "items.jsonl")), roots=roots))


def test_a_file_under_a_root_is_read_with_roots(tmp_path: Path) -> None:
    """Checking the opened file leaves a file under a root, even reached through a link inside it, readable."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "items.jsonl").write_text('"a"\n"b"\n')
    (tmp_path / "in" / "link.jsonl").symlink_to(tmp_path / "in" / "items.jsonl")
    source = ItemSource(uri=(tmp_path / "in" / "link.jsonl").as_uri())
    assert list(iter_source(source, roots=[str(tmp_path / "in")])) == ["a", "b"]


def test_remote_sources_are_checked_by_name_when_opened() -> None:
    """With roots, a remote URI outside every root prefix is refused at open time too."""
    uri = memory_file('"x"\n', ".jsonl")
    with pytest.raises(SourceForbidden, match="outside FANOUT_SOURCE_ROOTS"):
        list(iter_source(ItemSource(uri=uri), roots=["memory://elsewhere/"]))
    assert list(iter_source(ItemSource(uri=uri), roots=["memory://fanout-tests/"])) == ["x"]


def test_only_regular_files_are_sources(tmp_path: Path) -> None:
    """A folder or a pipe is not a source: refused without waiting on it."""
    os.mkfifo(tmp_path / "pipe")
    for path in (tmp_path, tmp_path / "pipe"):
        with pytest.raises(BadSource, match="not a regular file"):
            read(str(path))


def test_json_nested_past_pythons_limit_is_a_bad_source() -> None:
    """An item nested deeper than Python's JSON reader goes is a bad source naming the place, not a crash."""
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(BadSource, match="line 1: not JSON"):
        read(memory_file(deep + "\n"), "jsonl", max_item_bytes=1_000_000)
    with pytest.raises(BadSource, match="not JSON"):
        read(memory_file("[" + deep + "]"), "json", max_item_bytes=1_000_000)

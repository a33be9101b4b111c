"""Item sources: items read from a file or URL through fsspec, or yielded by an allowed generator.

A request may name `source` instead of `count` or `items`:

    {"uri": "data/orders.jsonl"}                      one JSON value per line (the default format)
    {"uri": "s3://bucket/orders.csv", "format": "csv"} a row -> an object keyed by the header
    {"uri": "file:///data/ids.txt", "format": "lines"} a line -> a string item
    {"uri": "memory://items.json", "format": "json"}  one JSON array of items
    {"generator": "pipelines.demo:orders", "params": {"n": 10}}

Files are opened through fsspec, so any protocol fsspec knows works once its
package is installed (`fanout[s3]`, `fanout[gs]`); nothing here reads a
protocol by hand. Every format is streamed: items are decoded as the bytes
arrive, so planning a million items never holds the file and its items at once.

Who may read what: a URI given over HTTP must lie under one of
`FANOUT_SOURCE_ROOTS` (`SourceForbidden`, a 403), so nobody reads the server's
files through the webhook; a generator must be listed in `FANOUT_SOURCES`.
The roots are checked twice: when the request arrives (before anything is
opened) and again on the file actually opened, by every reader that is given
roots (the webhook's preview, and the flow, whose process has the same
`FANOUT_SOURCE_ROOTS`, on a first run, a restart or a rerun alike). A local
file is opened first and then judged by the real path of what was opened, so
a symlink swapped in after the request was admitted cannot lead outside.
A source that cannot be opened or parsed raises `BadSource` (a 422 / exit 2)
naming the place, before any item runs.
"""

from __future__ import annotations

import codecs
import csv
import importlib
import io
import json
import os
import posixpath
import stat
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import fsspec
from pydantic import BaseModel, ConfigDict, Field, model_validator

from fanout.core.errors import InvalidRequest
from fanout.inputs.items import MAX_ITEM_BYTES, JsonValue, check_nesting, check_unicode

SourceFormat = Literal["jsonl", "json", "csv", "lines"]
SUFFIX_FORMATS: dict[str, SourceFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".txt": "lines",
}
GENERATOR_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
CHUNK_BYTES = 1 << 16


class BadSource(InvalidRequest):
    """The source cannot be opened or parsed; the message names the URI and the place."""


class SourceForbidden(InvalidRequest):
    """The source lies outside what this caller may read (a 403 over HTTP)."""


class ItemSource(BaseModel):
    """Where a run's items come from: a `uri` in a `format`, or an allowed `generator` with `params`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uri: str | None = Field(None, min_length=1, max_length=4096, description="Path or fsspec URL of the items.")
    format: SourceFormat | None = Field(
        None, description="jsonl | json | csv | lines; from the URI's suffix when unset, else jsonl."
    )
    generator: str | None = Field(
        None, pattern=GENERATOR_PATTERN, description="`module:function` yielding items; must be in FANOUT_SOURCES."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the generator.")

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        """Valid Unicode throughout, params nested at most `MAX_NESTING` deep, and no NUL in a URI:
        no file name or URL holds one."""
        check_unicode(data)
        if isinstance(data, dict):
            check_nesting(data.get("params"))
            if isinstance(data.get("uri"), str) and "\x00" in data["uri"]:
                raise ValueError("`uri` may not contain a NUL character")
        return data

    @model_validator(mode="after")
    def _one_kind(self) -> ItemSource:
        if (self.uri is None) == (self.generator is None):
            raise ValueError("a source needs exactly one of `uri` or `generator`")
        if self.generator is None and self.params:
            raise ValueError("`params` belong to a `generator` source")
        if self.uri is None and self.format is not None:
            raise ValueError("`format` belongs to a `uri` source")
        return self

    def resolved_format(self) -> SourceFormat:
        """The declared format, else the one the URI's suffix names, else jsonl."""
        if self.format is not None:
            return self.format
        suffix = posixpath.splitext((self.uri or "").split("?", 1)[0])[1].lower()
        return SUFFIX_FORMATS.get(suffix, "jsonl")


def check_allowed(source: ItemSource, roots: Sequence[str], generators: Sequence[str]) -> None:
    """`SourceForbidden` unless a URI lies under one of `roots` and a generator is in `generators`.

    Local paths are compared after resolving `..` and symlinks, so no path
    escapes its root; remote URLs are compared as normalised strings, folder by folder.
    """
    if source.generator is not None:
        if source.generator not in generators:
            raise SourceForbidden(f"generator {source.generator!r} is not in FANOUT_SOURCES")
        return
    assert source.uri is not None
    if not roots:
        raise SourceForbidden("no FANOUT_SOURCE_ROOTS are configured: sources by URI are not accepted here")
    target = _comparable(source.uri)
    if not any(_under(target, _comparable(root)) for root in roots):
        raise SourceForbidden(f"source {source.uri!r} is outside FANOUT_SOURCE_ROOTS")


def _comparable(uri: str) -> str:
    """`proto://normalised/path` for a remote URL, an absolute real path for a local one."""
    protocol, path = _split(uri)
    if protocol in ("file", "local"):
        return os.path.realpath(path)
    return f"{protocol}://{posixpath.normpath('/' + path).lstrip('/')}"


def _split(uri: str) -> tuple[str, str]:
    if "://" not in uri:
        return "file", os.path.expanduser(uri)
    protocol, path = uri.split("://", 1)
    return protocol.lower(), path


def _under(target: str, root: str) -> bool:
    root = root.rstrip("/") or "/"
    return target == root or target.startswith(root if root.endswith("/") else root + "/")


def iter_source(
    source: ItemSource, max_item_bytes: int = MAX_ITEM_BYTES, roots: Sequence[str] | None = None
) -> Iterator[JsonValue]:
    """The source's items, in order, decoded as they are read; `BadSource` on the first problem.

    With `roots`, the file opened must lie under one of them (`SourceForbidden`
    otherwise), judged on what was opened, not on the name asked for; None
    reads whatever the caller's own process may read.
    """
    if source.generator is not None:
        yield from _generated(source.generator, source.params)
        return
    assert source.uri is not None
    read = READERS[source.resolved_format()]
    try:
        with _opened(source.uri, roots) as stream:
            yield from read(stream, source.uri, max_item_bytes)
    except InvalidRequest:
        raise
    except (OSError, ValueError, ImportError) as error:  # missing file, bad URL, protocol not installed
        raise BadSource(f"cannot read source {source.uri!r}: {type(error).__name__}: {error}") from None


def _opened(uri: str, roots: Sequence[str] | None) -> Any:
    """A binary stream of the URI: a local file opened and then checked against `roots`, a remote
    one checked by name (object stores have no links) and opened through fsspec."""
    protocol, path = _split(uri)
    if protocol not in ("file", "local"):
        if roots is not None and not any(_under(_comparable(uri), _comparable(root)) for root in roots):
            raise SourceForbidden(f"source {uri!r} is outside FANOUT_SOURCE_ROOTS")
        return fsspec.open(uri, "rb")
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_opened(descriptor, uri, path, roots)
    except BaseException:
        os.close(descriptor)
        raise
    return os.fdopen(descriptor, "rb")


def _check_opened(descriptor: int, uri: str, path: str, roots: Sequence[str] | None) -> None:
    """`BadSource` unless the open file is a regular file; `SourceForbidden` unless its real path lies
    under a root. The real path is the one the kernel holds for the descriptor where it says so
    (/proc), else the resolved name, accepted only if it still names the very file that is open."""
    opened = os.fstat(descriptor)
    if not stat.S_ISREG(opened.st_mode):
        raise BadSource(f"source {uri!r} is not a regular file")
    if roots is None:
        return
    real = _real_path(descriptor, path)
    try:
        named = os.stat(real)
    except OSError:
        named = None
    if named is None or (named.st_dev, named.st_ino) != (opened.st_dev, opened.st_ino):
        raise SourceForbidden(f"source {uri!r} changed while it was opened; it was not read")
    if not any(_under(real, _comparable(root)) for root in roots):
        raise SourceForbidden(f"source {uri!r} is {real!r}, outside FANOUT_SOURCE_ROOTS; it was not read")


def _real_path(descriptor: int, path: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{descriptor}")
    except OSError:
        return os.path.realpath(path)


def _generated(spec: str, params: dict[str, Any]) -> Iterator[JsonValue]:
    module_name, _, attribute = spec.partition(":")
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise BadSource(f"cannot load generator {spec!r}: {error}") from None
    try:
        produced = function(**params)
        iterator = iter(produced)
    except TypeError as error:
        raise BadSource(f"generator {spec!r} must return an iterable of items: {error}") from None
    yield from iterator


def _lines(stream: Any, uri: str, max_item_bytes: int) -> Iterator[tuple[int, bytes]]:
    """(line number, line without its end) for each non-blank line; an over-long line is refused
    as soon as it is seen, without reading the rest of it into memory."""
    number = 0
    while True:
        line = stream.readline(max_item_bytes + 2)
        if not line:
            return
        number += 1
        if len(line) > max_item_bytes + 1 or (len(line) == max_item_bytes + 1 and not line.endswith(b"\n")):
            raise BadSource(f"{uri} line {number}: item larger than {max_item_bytes} bytes")
        stripped = line.rstrip(b"\r\n")
        if stripped.strip():
            yield number, stripped


def read_jsonl(stream: Any, uri: str, max_item_bytes: int) -> Iterator[JsonValue]:
    """One JSON value per non-blank line."""
    for number, line in _lines(stream, uri, max_item_bytes):
        try:
            yield json.loads(line)
        except (ValueError, RecursionError) as error:
            raise BadSource(f"{uri} line {number}: not JSON: {error}") from None


def read_lines(stream: Any, uri: str, max_item_bytes: int) -> Iterator[JsonValue]:
    """One string item per non-blank line (UTF-8)."""
    for number, line in _lines(stream, uri, max_item_bytes):
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise BadSource(f"{uri} line {number}: not UTF-8: {error}") from None


def read_csv(stream: Any, uri: str, max_item_bytes: int) -> Iterator[JsonValue]:
    """One object per row, keyed by the header row; a row with another number of fields is refused."""
    csv.field_size_limit(max_item_bytes)
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if not header or len(set(header)) != len(header) or not all(header):
            raise BadSource(f"{uri}: the first row must name every column once, got {header!r}")
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise BadSource(f"{uri} line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
            yield dict(zip(header, row, strict=False))
    except (csv.Error, UnicodeDecodeError) as error:
        raise BadSource(f"{uri}: not CSV: {error}") from None
    finally:
        text.detach()


def read_json_array(stream: Any, uri: str, max_item_bytes: int) -> Iterator[JsonValue]:
    """The elements of one top-level JSON array, decoded one by one as the text arrives."""
    text = _TextWindow(_text_chunks(stream, uri))
    if text.next_char() != "[":
        raise BadSource(f"{uri}: a json source must be one array of items")
    text.pos += 1
    if text.next_char() == "]":
        text.expect_end(uri)
        return
    while True:
        yield text.decode_value(uri, max_item_bytes)
        separator = text.next_char()
        if separator == "]":
            text.expect_end(uri)
            return
        if separator != ",":
            raise BadSource(f"{uri}: expected ',' or ']' after item, got {separator or 'the end'!r}")
        text.pos += 1


class _TextWindow:
    """The undecoded rest of a JSON text: the current chunk and a position in it, refilled on demand."""

    def __init__(self, chunks: Iterator[str]) -> None:
        self._chunks = chunks
        self._decoder = json.JSONDecoder()
        self.buffer = ""
        self.pos = 0
        self.at_end = False

    def fill(self) -> bool:
        """Append the next chunk (dropping what was decoded); False at the end of the text."""
        chunk = next(self._chunks, None)
        if chunk is None:
            self.at_end = True
            return False
        self.buffer = self.buffer[self.pos :] + chunk
        self.pos = 0
        return True

    def next_char(self) -> str:
        """The next character that is not whitespace, left in place; "" at the end of the text."""
        while True:
            while self.pos < len(self.buffer) and self.buffer[self.pos] in " \t\r\n":
                self.pos += 1
            if self.pos < len(self.buffer):
                return self.buffer[self.pos]
            if not self.fill():
                return ""

    def decode_value(self, uri: str, max_item_bytes: int) -> JsonValue:
        """The JSON value at the position; reads on while a value is cut at the chunk's end."""
        self.next_char()
        while True:
            try:
                value, end = self._decoder.raw_decode(self.buffer, self.pos)
            except RecursionError as error:
                raise BadSource(f"{uri}: not JSON: {error}") from None
            except ValueError as error:
                if len(self.buffer) - self.pos > max_item_bytes:
                    raise BadSource(f"{uri}: item larger than {max_item_bytes} bytes, or not JSON: {error}") from None
                if self.fill():
                    continue
                raise BadSource(f"{uri}: not JSON: {error}") from None
            if end == len(self.buffer) and not self.at_end and self.fill():
                continue  # a number cut at the chunk's end decodes short: read on, decode again
            break
        if end - self.pos > max_item_bytes:
            raise BadSource(f"{uri}: item larger than {max_item_bytes} bytes")
        self.pos = end
        return value

    def expect_end(self, uri: str) -> None:
        """Nothing but whitespace may follow the array's closing bracket."""
        self.pos += 1
        if self.next_char():
            raise BadSource(f"{uri}: text after the array")


def _text_chunks(stream: Any, uri: str) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := stream.read(CHUNK_BYTES):
            yield decoder.decode(chunk)
        yield decoder.decode(b"", final=True)
    except UnicodeDecodeError as error:
        raise BadSource(f"{uri}: not UTF-8: {error}") from None


READERS = {"jsonl": read_jsonl, "lines": read_lines, "csv": read_csv, "json": read_json_array}

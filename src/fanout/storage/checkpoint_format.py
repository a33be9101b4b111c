"""fanout's checkpoint record: one line of text per finished item, versioned and checksummed.

This module owns the format; nothing else reads or writes its bytes. A damaged or unknown record is
reported and treated as absent (its item runs again), and nothing read from storage is unpickled.
The format is specified in docs/design/checkpoint-format.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Any

VERSION = 1
MAGIC = b"fanout-checkpoint/1"
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
_string = json.encoder.encode_basestring  # how that encoder writes a string (non-ASCII kept)
_HEAD = MAGIC + b" "
_BODY_AT = len(_HEAD) + 64 + 1  # the magic, its space, the checksum's 64 hex digits, their space
_KEY_AT = _BODY_AT + len(b'{"key":')
_KEY_END = b',"result":'  # inside the key's JSON string every quote is escaped, so this first ends the key


class UnreadableRecord(ValueError):
    """A line that is not a version-1 record; the message says why (older version, damaged)."""


def encode(key: str, result: Any) -> bytes:
    """The record of `key` finished with `result`, LF included; `TypeError`/`ValueError` for a
    result JSON cannot hold.

    The body is put together from its two members, the exact text the encoder
    gives for the whole object ("key" sorts before "result"), and a string result,
    the common case, is escaped directly: the encoder's Python layers cost more
    than the rest of an item's checkpoint.
    """
    value = _string(result) if type(result) is str else _encoder.encode(result)
    body = f'{{"key":{_string(key)},"result":{value}}}'.encode()
    return b"".join((_HEAD, hashlib.sha256(body).hexdigest().encode(), b" ", body, b"\n"))


def decode(line: bytes) -> tuple[str, Any]:
    """The key and result of one record (with or without its LF), or `UnreadableRecord`."""
    magic, _, rest = line.rstrip(b"\n").partition(b" ")
    if magic != MAGIC:
        raise UnreadableRecord(_other_version(magic))
    checksum, _, body = rest.partition(b" ")
    if hashlib.sha256(body).hexdigest().encode() != checksum:
        raise UnreadableRecord("damaged: checksum does not match")
    try:
        record = json.loads(body)
    except ValueError as error:  # unreachable unless the writer was wrong; never trust it blindly
        raise UnreadableRecord(f"damaged: {error}") from None
    if not isinstance(record, dict) or set(record) != {"key", "result"} or not isinstance(record["key"], str):
        raise UnreadableRecord("damaged: body is not a {key, result} object")
    return record["key"], record["result"]


def encoded_key(key: str) -> bytes:
    """The key exactly as a record's body holds it (a JSON string, non-ASCII kept): an index can
    match records to keys by these bytes without decoding any record."""
    return _string(key).encode()


def encoded_keys(keys: Iterable[str]) -> bytes:
    """Each key as `encoded_key` gives it, followed by an LF: the lines of a plan chunk."""
    text = "\n".join(map(_string, keys))
    return (text + "\n").encode() if text else b""


def sound(line: bytes) -> bool:
    """Whether a line (without its LF) is a version-1 record whose checksum matches, without parsing it."""
    magic, _, rest = line.partition(b" ")
    checksum, _, body = rest.partition(b" ")
    return magic == MAGIC and hashlib.sha256(body).hexdigest().encode() == checksum


def sound_records(block: bytes, end: int) -> Iterator[tuple[int, int, bytes]]:
    """Each sound version-1 record among the whole lines of `block[:end]`: where it starts, its length
    without the LF, and its key as the body holds it (`encoded_key`), found without parsing the body."""
    start = 0
    for line in block[:end].split(b"\n")[:-1]:
        length = len(line)
        if line.startswith(_HEAD) and line.startswith(b'{"key":', _BODY_AT):
            key_end = line.find(_KEY_END, _KEY_AT)
            checksum = line[len(_HEAD) : _BODY_AT - 1]
            if key_end > 0 and hashlib.sha256(line[_BODY_AT:]).hexdigest().encode() == checksum:
                yield start, length, line[_KEY_AT:key_end]
        start += length + 1


def key_of(line: bytes) -> str | None:
    """The key of a sound record without keeping its result, or None: for progress watchers."""
    try:
        return decode(line)[0]
    except UnreadableRecord:
        return None


def _other_version(magic: bytes) -> str:
    if magic.startswith(b"{"):
        return "older format (version 0: a Prefect result record holding a pickle), not read"
    if magic.startswith(b"fanout-checkpoint/"):
        return f"format {magic.decode(errors='replace')} is not version {VERSION}, not read"
    return "damaged: not a fanout checkpoint record"

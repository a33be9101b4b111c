"""fanout's checkpoint record: one line of text per finished item, versioned and checksummed.

This module owns the format; nothing else reads or writes its bytes.

Format, version 1
-----------------
A record is one line of UTF-8 text ending in a line feed (LF, 0x0A)::

    fanout-checkpoint/1 <checksum> <body>\\n

- ``fanout-checkpoint/1`` names the format and its version. A reader meets
  other versions by their first field and treats such a line as absent (the
  item runs again); it never guesses at a layout it does not know.
- ``<body>`` is canonical JSON of an object with exactly two members:
  ``{"key":<the item's key>,"result":<the item's JSON result>}``: keys sorted
  at every level, no whitespace, UTF-8 (non-ASCII characters unescaped), no
  NaN or infinities. JSON escapes every control character, so the body holds
  no LF. The key is the item's identity: today the item string; for JSON items
  of any shape, the digest of their canonical JSON or their ``item_key``.
- ``<checksum>`` is the lowercase hex SHA-256 of the body's bytes, exactly as
  written. A line whose checksum does not match (a flipped byte, a line cut
  short, two lines run together) is damaged and treated as absent.

Records are kept one per line in append-only journals (local folders) or
one per object (storage without append). A reader reports every line it
skips, with the reason; a wrong value is never returned, at the cost of
running that item again, which at-least-once delivery allows.

Version 0, the records fanout wrote before this format (Prefect ``ResultRecord``
JSON holding a base64 pickle), begins with ``{``: it is recognised, reported
and never decoded. Nothing fanout reads from storage is unpickled.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

VERSION = 1
MAGIC = b"fanout-checkpoint/1"
_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True, allow_nan=False)
_string = json.encoder.encode_basestring  # how that encoder writes a string (non-ASCII kept)


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
    body = ('{"key":' + _string(key) + ',"result":' + value + "}").encode()
    return MAGIC + b" " + hashlib.sha256(body).hexdigest().encode() + b" " + body + b"\n"


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


def sound(line: bytes) -> bool:
    """Whether a line (without its LF) is a version-1 record whose checksum matches, without parsing it."""
    magic, _, rest = line.partition(b" ")
    checksum, _, body = rest.partition(b" ")
    return magic == MAGIC and hashlib.sha256(body).hexdigest().encode() == checksum


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

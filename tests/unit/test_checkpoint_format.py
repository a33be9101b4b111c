"""fanout's checkpoint record: versioned, checksummed JSON lines that never decode to a wrong value."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
from typing import Any

import pytest

from fanout.storage import checkpoint_format
from fanout.storage.checkpoint_format import UnreadableRecord, decode, encode


@pytest.mark.parametrize(
    "result", ["Processed item-1", 7, 2.5, None, True, [1, "a"], {"b": 1, "a": [None]}, "é ✓ \u2028"]
)
def test_a_record_gives_back_its_key_and_result(result: Any) -> None:
    """Any JSON result comes back equal, with its key."""
    assert decode(encode("item-1", result)) == ("item-1", result)


def test_a_record_is_one_line_with_version_checksum_and_canonical_body() -> None:
    """The line is `fanout-checkpoint/1 <sha256 of body> <body>` with sorted keys and no whitespace."""
    line = encode("k", {"b": 1, "a": 2})
    magic, checksum, body = line.rstrip(b"\n").split(b" ", 2)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert magic == b"fanout-checkpoint/1"
    assert body == b'{"key":"k","result":{"a":2,"b":1}}'
    assert checksum == hashlib.sha256(body).hexdigest().encode()


@pytest.mark.parametrize("result", ["plain", 'é \u2028 \x00 "q"', 3, [1, {"b": 2, "a": 1}], None])
def test_the_body_is_the_canonical_json_of_key_and_result(result: Any) -> None:
    """However the body is put together, it is exactly the sorted, compact, UTF-8 JSON of {key, result}."""
    body = encode("ké\n", result).rstrip(b"\n").split(b" ", 2)[2]
    canonical = json.dumps({"key": "ké\n", "result": result}, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    assert body == canonical.encode()


def test_a_newline_inside_a_result_stays_inside_the_line() -> None:
    """Control characters are escaped, so a record is always exactly one line."""
    assert encode("k\nx", "a\nb\r").count(b"\n") == 1


@pytest.mark.parametrize("position", [25, 70, 90, 100])
def test_a_flipped_byte_is_reported_not_decoded(position: int) -> None:
    """Changing any byte of checksum or body makes the record unreadable, never a different value."""
    line = bytearray(encode("item-304", "Processed item-304"))
    line[position] ^= 0x04
    with pytest.raises(UnreadableRecord, match="damaged"):
        decode(bytes(line))


def test_a_line_cut_short_is_damaged() -> None:
    """A record missing its tail does not decode."""
    with pytest.raises(UnreadableRecord, match="damaged"):
        decode(encode("a", "value")[:-8])


def test_a_pickled_prefect_record_is_an_older_format_and_never_unpickled() -> None:
    """A version-0 line (Prefect record with a pickle) is named as older and its payload not loaded."""
    payload = base64.b64encode(pickle.dumps("x")).decode()
    line = json.dumps({"metadata": {"serializer": {"type": "pickle"}}, "result": payload}).encode()
    with pytest.raises(UnreadableRecord, match="older format"):
        decode(line)


def test_another_version_is_not_read() -> None:
    """A record of a version this reader does not know is refused by its first field."""
    line = encode("a", 1).replace(b"fanout-checkpoint/1", b"fanout-checkpoint/2", 1)
    with pytest.raises(UnreadableRecord, match="not version 1"):
        decode(line)


def test_a_result_json_cannot_hold_is_refused_when_written() -> None:
    """A set, an object or NaN is not JSON: encoding refuses it."""
    for result in ({1}, object(), float("nan")):
        with pytest.raises((TypeError, ValueError)):
            encode("a", result)


def test_key_of_reads_only_sound_records() -> None:
    """A progress watcher sees the key of a sound record and None for a damaged one."""
    assert checkpoint_format.key_of(encode("a", 1)) == "a"
    assert checkpoint_format.key_of(b"fanout-checkpoint/1 00 {}") is None


def test_sound_records_place_each_whole_sound_record_by_its_encoded_key() -> None:
    """Sound records come back with their offset, length and key bytes; damaged, foreign and cut-short lines do not."""
    tricky = 'a","result":"b'
    good = [encode("item-1", "x"), encode(tricky, {"result": 1}), encode("é", None)]
    damaged = encode("item-2", "y").replace(b'"y"', b'"z"')
    foreign = b'{"key": "item-3"}\n'
    block = good[0] + damaged + good[1] + foreign + good[2] + encode("item-4", "cut")[:30]
    offsets = [0, len(good[0]) + len(damaged), len(good[0]) + len(damaged) + len(good[1]) + len(foreign)]
    found = list(checkpoint_format.sound_records(block, block.rfind(b"\n") + 1))
    assert found == [
        (offset, len(line) - 1, checkpoint_format.encoded_key(key))
        for offset, line, key in zip(offsets, good, ["item-1", tricky, "é"], strict=True)
    ]

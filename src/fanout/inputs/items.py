"""Item identity: items are any JSON value, and each has one key that names it everywhere.

An item's key names its checkpoint, its correlation id (`<instance>/<key>`),
its task run and its row in reports, so it must be stable across runs and
unique within a run:

- with `item_key`, the key is that field of an object item (`{"id": 7}` -> `7`);
- a short printable string item is its own key, so the seed's `item-3` keeps
  its readable name and output;
- any other item is named by the digest of its canonical JSON (sorted keys, no
  whitespace), so `{"a": 1, "b": 2}` and `{"b": 2, "a": 1}` are one item.

Two items with one key are refused (`DuplicateItems`, a 422 / exit 2) before
anything runs: they would share one checkpoint and one result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from fanout.core.errors import InvalidRequest

READABLE_KEY_MAX = 1024
"""A string item up to this many printable characters is its own key; longer ones are digested."""

DIGEST_PREFIX = "sha256-"
MAX_ITEM_BYTES = 1_000_000
"""Largest item a source may hold, as Durable Functions allows for an activity's input."""

JsonValue = Any
"""Whatever `json.loads` returns: dict, list, str, int, float, bool or None."""


class DuplicateItems(InvalidRequest):
    """Two or more items share one key; the message names them."""


class BadItem(InvalidRequest):
    """An item cannot be run as given: not JSON, too large, or missing its `item_key` field."""


def canonical_json(value: JsonValue) -> str:
    """The one JSON text of a value: sorted keys, no whitespace, no NaN; raises `BadItem` otherwise."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise BadItem(f"item is not a JSON value: {error}") from None


def digest_key(value: JsonValue) -> str:
    """`sha256-<40 hex>` of the value's canonical JSON."""
    return DIGEST_PREFIX + hashlib.sha256(_utf8(canonical_json(value))).hexdigest()[:40]


def check_unicode(value: object) -> None:
    """`BadItem` unless every string in `value`, object keys included, is valid Unicode.

    JSON's `\\ud800` escape decodes to a lone surrogate, a string that no UTF-8
    text (a checkpoint, a Prefect parameter, an HTTP answer) can hold; it is
    refused where input arrives. Values JSON cannot hold are left to the checks
    that own them.
    """
    _utf8(json.dumps(value, ensure_ascii=False, skipkeys=True, default=lambda _: None))


MAX_NESTING = 64
"""Deepest nesting of lists and objects in an item: Prefect's and pydantic's JSON parsers stop at 200 levels,
and a flow-run parameter holds an item a few levels down."""


def check_nesting(value: object, limit: int = MAX_NESTING) -> None:
    """`BadItem` when lists and objects in `value` nest deeper than `limit` levels."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        node, depth = pending.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            raise BadItem(f"lists and objects may nest at most {limit} levels deep")
        pending.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as error:
        bad = text[error.start : error.end]
        raise BadItem(f"strings must be valid Unicode: {bad!a} (a lone surrogate) is not") from None


def item_key(item: JsonValue, key_field: str | None = None) -> str:
    """The key of one item (see the module docstring); `BadItem` when `key_field` cannot name it."""
    if key_field is not None:
        if not isinstance(item, dict):
            raise BadItem(f"item_key {key_field!r} needs object items, got {type(item).__name__}: {_short(item)}")
        if key_field not in item:
            raise BadItem(f"item has no {key_field!r} field: {_short(item)}")
        value = item[key_field]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise BadItem(f"item's {key_field!r} must be a string or an integer, got {_short(value)}")
        key = str(value)
        if not _readable(key):
            raise BadItem(f"item's {key_field!r} must be 1..{READABLE_KEY_MAX} printable characters: {_short(value)}")
        check_unicode(item)  # the rest of the item travels too: to Prefect, the processor, the checkpoint
        return key
    if isinstance(item, str) and _readable(item):
        return item
    return digest_key(item)


def _readable(text: str) -> bool:
    return 0 < len(text) <= READABLE_KEY_MAX and text.isprintable()


def _short(value: JsonValue, limit: int = 80) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except ValueError:
        text = repr(value)
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")  # a message must stay valid text


@dataclass(frozen=True, slots=True)
class PlannedItems:
    """A run's items in order, each with its key; built by `plan` after every check passed."""

    items: list[JsonValue]
    keys: list[str]

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[tuple[str, JsonValue]]:
        return zip(self.keys, self.items, strict=False)


def plan(items: Iterable[JsonValue], key_field: str | None = None, max_items: int | None = None) -> PlannedItems:
    """Every item with its key, in order, consuming `items` once (a source is streamed through here).

    Raises `BadItem` at the first item that cannot be keyed, `InvalidRequest`
    past `max_items`, and `DuplicateItems` naming up to ten repeated keys with
    the positions (0-based) where each occurs.
    """
    kept: list[JsonValue] = []
    keys: list[str] = []
    first_seen: dict[str, int] = {}
    repeats: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        if max_items is not None and index >= max_items:
            raise InvalidRequest(f"more than max_items {max_items} items")
        try:
            key = item_key(item, key_field)
        except BadItem as error:
            raise BadItem(f"item {index}: {error}") from None
        seen = first_seen.setdefault(key, index)
        if seen != index:
            repeats.setdefault(key, [seen]).append(index)
        kept.append(item)
        keys.append(key)
    if repeats:
        named = "; ".join(f"{key!r} at {', '.join(map(str, where))}" for key, where in list(repeats.items())[:10])
        more = f" (and {len(repeats) - 10} more)" if len(repeats) > 10 else ""
        raise DuplicateItems(f"{len(repeats)} item key(s) occur more than once: {named}{more}")
    return PlannedItems(items=kept, keys=keys)


class ItemValues:
    """The values of a run's items that are not their own key, by key; any other item is its key.

    The run carries items as their keys (checkpoints, correlation ids, task-run
    names, reports), and the processor is handed `of(key)`. The seed's strings
    need no entry. It is an opaque object, not a mapping or a dataclass, because
    every task run receives it with the run and Prefect walks the collections in
    a task's parameters: a million entries per submission. A per-item attribute
    (a `str` subclass holding its value) cost ~400 bytes per item; an entry here ~100.
    """

    __slots__ = ("_values",)

    def __init__(self, values: dict[str, JsonValue] | None = None) -> None:
        self._values = values or {}

    def of(self, key: str) -> JsonValue:
        """What the processor receives for the item keyed `key`."""
        return self._values.get(key, key)

    def __len__(self) -> int:
        return len(self._values)

    def __getstate__(self) -> dict[str, JsonValue]:
        return self._values

    def __setstate__(self, values: dict[str, JsonValue]) -> None:
        self._values = values


def split(planned: PlannedItems) -> tuple[list[str], ItemValues]:
    """The plan as the run carries it: keys in order, and the values of the items that are not their key."""
    values = {
        key: item
        for key, item in zip(planned.keys, planned.items, strict=True)
        if not (isinstance(item, str) and item == key)
    }
    return planned.keys, ItemValues(values)


def display_name(key: str, limit: int = 60) -> str:
    """A key short enough for a task-run name or a log prefix; the digest keys already are."""
    return key if len(key) <= limit else key[: limit - 3] + "..."

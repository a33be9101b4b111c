"""Item identity: keys from `item_key`, readable strings, canonical digests, duplicates refused."""

from __future__ import annotations

import pytest

from fanout.core.errors import InvalidRequest
from fanout.inputs.items import (
    BadItem,
    DuplicateItems,
    canonical_json,
    digest_key,
    item_key,
    keyed,
    plan,
)


def test_seed_string_items_are_their_own_keys() -> None:
    """The seed's `item-3` keeps its readable name as its key."""
    assert item_key("item-3") == "item-3"


def test_object_item_with_item_key_is_named_by_that_field() -> None:
    """With `item_key`, an object item's key is that field's value, as text."""
    assert item_key({"id": 7, "url": "x"}, "id") == "7"
    assert item_key({"sku": "A-1"}, "sku") == "A-1"


def test_object_item_without_item_key_is_named_by_its_canonical_digest() -> None:
    """Without `item_key`, key order and whitespace do not change an object's identity."""
    assert item_key({"a": 1, "b": [1, 2]}) == item_key({"b": [1, 2], "a": 1})
    assert item_key({"a": 1}).startswith("sha256-")
    assert item_key({"a": 1}) != item_key({"a": 2})


def test_canonical_json_sorts_keys_without_whitespace() -> None:
    """Canonical JSON is sorted and compact."""
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == '{"a":[1,{"c":3,"d":2}],"b":1}'


def test_numbers_lists_and_null_are_items() -> None:
    """Any JSON value is an item, named by its digest."""
    keys = {item_key(value) for value in (1, 1.5, [1, 2], None, True)}
    assert len(keys) == 5 and all(key.startswith("sha256-") for key in keys)


def test_long_or_unprintable_strings_are_digested() -> None:
    """A string too long or unprintable for a name is keyed by its digest."""
    assert item_key("x" * 2000) == digest_key("x" * 2000)
    assert item_key("a\nb").startswith("sha256-")


def test_item_key_missing_from_an_item_is_refused() -> None:
    """An object item without the `item_key` field is refused, naming its position."""
    with pytest.raises(BadItem, match=r"item 1: item has no 'id' field"):
        plan([{"id": 1}, {"name": "x"}], "id")


def test_item_key_on_a_non_object_item_is_refused() -> None:
    """`item_key` needs object items."""
    with pytest.raises(BadItem, match="needs object items"):
        item_key("item-1", "id")


def test_item_key_value_must_be_text_or_integer() -> None:
    """A key field holding an object or a boolean cannot name an item."""
    with pytest.raises(BadItem):
        item_key({"id": {"nested": 1}}, "id")
    with pytest.raises(BadItem):
        item_key({"id": True}, "id")


def test_duplicate_keys_are_refused_naming_them() -> None:
    """Two items with one key are a bad request that names the key and its positions."""
    with pytest.raises(DuplicateItems, match=r"'7' at 0, 2") as raised:
        plan([{"id": 7}, {"id": 8}, {"id": 7, "other": True}], "id")
    assert isinstance(raised.value, InvalidRequest)


def test_duplicate_objects_without_item_key_are_refused() -> None:
    """The same object twice (in any key order) is a duplicate."""
    with pytest.raises(DuplicateItems):
        plan([{"a": 1, "b": 2}, {"b": 2, "a": 1}])


def test_plan_keeps_order_and_pairs_keys_with_items() -> None:
    """The plan lists keys and items in the order given."""
    planned = plan(["item-1", {"id": 2}, 3])
    assert planned.keys[0] == "item-1" and len(planned) == 3
    assert [item for _, item in planned] == ["item-1", {"id": 2}, 3]


def test_plan_refuses_more_than_max_items() -> None:
    """A plan stops at `max_items`."""
    with pytest.raises(InvalidRequest, match="max_items 2"):
        plan(iter(range(5)), max_items=2)


def test_not_json_item_is_refused() -> None:
    """A value JSON cannot hold (NaN) is not an item."""
    with pytest.raises(BadItem, match="not a JSON value"):
        item_key(float("nan"))


def test_keyed_by_position_allows_repeats_and_hands_back_each_item() -> None:
    """With no `key`, items are named 0, 1, ... and the function receives each item itself."""
    keyed_items = keyed(["a", {"n": 1}, "a"])
    assert keyed_items.keys == ["0", "1", "2"]
    assert [keyed_items.values.of(key) for key in keyed_items.keys] == ["a", {"n": 1}, "a"]


def test_keyed_by_a_field_uses_item_key() -> None:
    """A field name keys object items by that field, as a request's `item_key` does."""
    assert keyed([{"id": 7}, {"id": "b"}], "id").keys == ["7", "b"]


def test_keyed_by_a_function_uses_what_it_returns() -> None:
    """A key function's string or integer names each item; a string item that is its own key needs no value."""
    keyed_items = keyed(["a", "bb"], len)
    assert keyed_items.keys == ["1", "2"] and keyed_items.values.of("2") == "bb"
    assert len(keyed(["x"], str).values) == 0


@pytest.mark.parametrize("key", [lambda item: None, lambda item: True, lambda item: "\n"])
def test_a_key_function_must_return_a_printable_string_or_an_integer(key: object) -> None:
    """A key that is not a printable string or an integer is refused, naming the item."""
    with pytest.raises(BadItem, match="item 0"):
        keyed(["a"], key)  # type: ignore[arg-type]


def test_a_key_function_giving_one_key_twice_is_refused() -> None:
    """Two items with one key are refused with their positions."""
    with pytest.raises(DuplicateItems, match="'x' at 0, 2"):
        keyed(["a", "b", "c"], lambda item: "y" if item == "b" else "x")

"""fanout: durable fan-out / fan-in for Prefect 3 flows.

The names in `__all__` are the public API; every other module may change. They are imported on first
use, so a command that needs none of them (`fanout status`) does not import Prefect.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fanout.core.errors import FanoutError, InvalidRequest, ItemsFailed, TransientError
    from fanout.core.item_context import ItemContext, current_item
    from fanout.engine.durable_map import MapResults, NotInFlow, durable_map, durable_map_async
    from fanout.engine.instance_lease import InstanceBusy
    from fanout.engine.item_logging import item_logger
    from fanout.inputs.items import BadItem, DuplicateItems
    from fanout.inputs.request import FanoutRequest
    from fanout.inputs.sources import ItemSource, source

_HOMES = {
    "fanout.core.errors": ["FanoutError", "InvalidRequest", "ItemsFailed", "TransientError"],
    "fanout.core.item_context": ["ItemContext", "current_item"],
    "fanout.engine.durable_map": ["MapResults", "NotInFlow", "durable_map", "durable_map_async"],
    "fanout.engine.instance_lease": ["InstanceBusy"],
    "fanout.engine.item_logging": ["item_logger"],
    "fanout.inputs.items": ["BadItem", "DuplicateItems"],
    "fanout.inputs.request": ["FanoutRequest"],
    "fanout.inputs.sources": ["ItemSource", "source"],
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "BadItem",
    "DuplicateItems",
    "FanoutError",
    "FanoutRequest",
    "InstanceBusy",
    "InvalidRequest",
    "ItemContext",
    "ItemSource",
    "ItemsFailed",
    "MapResults",
    "NotInFlow",
    "TransientError",
    "current_item",
    "durable_map",
    "durable_map_async",
    "item_logger",
    "source",
]


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use, and keep it here."""
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'fanout' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])

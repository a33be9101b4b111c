"""fanout: durable fan-out / fan-in for Prefect 3 flows.

The names in `__all__` are the public API; every other module may change.
"""

from fanout.core.errors import FanoutError, InvalidRequest, ItemsFailed, TransientError
from fanout.core.item_context import ItemContext, current_item
from fanout.engine.durable_map import MapResults, NotInFlow, durable_map, durable_map_async
from fanout.engine.instance_lease import InstanceBusy
from fanout.engine.item_logging import item_logger
from fanout.inputs.items import BadItem, DuplicateItems
from fanout.inputs.request import FanoutRequest
from fanout.inputs.sources import ItemSource, source

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

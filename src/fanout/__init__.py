"""fanout: durable fan-out / fan-in for Prefect 3 flows.

The names in `__all__` are the public API; every other module may change.
"""

from fanout.core.errors import FanoutError, InvalidRequest, ItemsFailed, TransientError
from fanout.core.item_context import ItemContext, current_item
from fanout.engine.item_logging import item_logger
from fanout.inputs.request import FanoutRequest
from fanout.inputs.sources import ItemSource

__all__ = [
    "FanoutError",
    "FanoutRequest",
    "InvalidRequest",
    "ItemContext",
    "ItemSource",
    "ItemsFailed",
    "TransientError",
    "current_item",
    "item_logger",
]

"""Processors for the workload tests: async and JSON-item variants of `tests.support.processors`.

FANOUT_TEST_GATE   a file path: items whose number is >= 5 wait (polling, asynchronously) until it exists
The FANOUT_TEST_* variables of `tests.support.processors` apply as well, by item key.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from fanout.core.item_context import current_item
from tests.support.processors import RECORDER, scripted


async def scripted_async(item: Any) -> str:
    """`scripted` on the item's key, awaited: the same executions log, failures, flakiness and crashes."""
    key = current_item().item
    gate = os.environ.get("FANOUT_TEST_GATE")
    number = key.rpartition("-")[2]
    if gate and number.isdigit() and int(number) >= 5:
        while not Path(gate).exists():
            await asyncio.sleep(0.01)
    await asyncio.sleep(0)
    return scripted(key)


def echo(item: Any) -> Any:
    """The item itself, wrapped: shows what the processor received."""
    return {"got": item}


async def echo_async(item: Any) -> Any:
    """`echo`, awaited."""
    await asyncio.sleep(0)
    return {"got": item}


async def not_json(item: Any) -> Any:
    """A result JSON cannot hold."""
    return {item} if isinstance(item, str) else item


async def recorded_async(item: Any) -> str:
    """`recorded`, awaited: counts the items in flight (`RECORDER`) while sleeping briefly on the loop."""
    with RECORDER:
        await asyncio.sleep(0.02)
    return f"Processed {item}"

"""A user's own flow on fanout's public API, for the tests: an order total in two `durable_map` stages.

Each execution of a stage's function writes a file `<stage>-<key>.<uuid>` to
FANOUT_TEST_LOG_DIR, so a test can tell which items ran in which process.
With FANOUT_TEST_KILL_AFTER=n the process SIGKILLs itself as it starts its
n-th execution, as a host dying mid-run would.

Run as `python -m tests.support.user_flows <instance_id> <orders>`: prints the
flow's result as JSON.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from prefect import flow

import fanout

TAX = 1.25
PRICE_STAGE = "price"
TAX_STAGE = "with_tax"
_executions = 0
_lock = threading.Lock()


def _record(stage: str) -> None:
    """Note this execution, and die here when FANOUT_TEST_KILL_AFTER says so."""
    global _executions
    with _lock:
        _executions += 1
        count = _executions
    folder = os.environ.get("FANOUT_TEST_LOG_DIR")
    if folder:
        key = fanout.current_item().item
        (Path(folder) / f"{stage}-{key}.{uuid.uuid4().hex}").touch()
    if count == int(os.environ.get("FANOUT_TEST_KILL_AFTER", "0") or 0):
        os.kill(os.getpid(), signal.SIGKILL)


def price(order: dict[str, Any]) -> int:
    """Stage one: an order's price in cents."""
    _record("price")
    return int(order["quantity"]) * int(order["unit_cents"])


def with_tax(cents: int) -> float:
    """Stage two: a price with tax."""
    _record("with_tax")
    return cents * TAX


@flow(name="order-total")
def order_total(orders: list[dict[str, Any]], instance_id: str | None = None) -> dict[str, Any]:
    """The orders priced (keyed by their `id`), then taxed (by position), then summed."""
    cents = fanout.durable_map(price, orders, instance_id=instance_id, key="id", max_parallel=2)
    taxed = fanout.durable_map(with_tax, cents, instance_id=instance_id, max_parallel=2)
    return {"orders": len(taxed), "cents": sum(cents), "total": sum(taxed)}


def orders(count: int) -> list[dict[str, Any]]:
    """`count` orders: order `n` is `n` items at 100 cents."""
    return [{"id": f"order-{n}", "quantity": n, "unit_cents": 100} for n in range(1, count + 1)]


def expected_total(count: int) -> dict[str, Any]:
    """What `order_total(orders(count))` returns."""
    cents = sum(100 * n for n in range(1, count + 1))
    return {"orders": count, "cents": cents, "total": cents * TAX}


if __name__ == "__main__":
    instance, count = sys.argv[1], int(sys.argv[2])
    print(json.dumps(order_total(orders(count), instance_id=instance)))

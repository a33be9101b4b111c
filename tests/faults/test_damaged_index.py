"""The results index of a finished run damaged on disk: the results API still shows every item completed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.fault_scenarios import Workspace, start_worker
from tests.support.fault_stack import FaultStack
from tests.support.stacks import poll_until_finished

pytestmark = pytest.mark.faults

COUNT = 40


def swap_two_slots(slots: Path) -> None:
    data = bytearray(slots.read_bytes())
    size = len(data) // COUNT
    data[2 * size : 3 * size], data[33 * size : 34 * size] = data[33 * size : 34 * size], data[2 * size : 3 * size]
    slots.write_bytes(bytes(data))


def random_bytes(slots: Path) -> None:
    slots.write_bytes(os.urandom(slots.stat().st_size))


@pytest.mark.parametrize("damage", [swap_two_slots, random_bytes], ids=["two slots swapped", "random bytes"])
def test_a_damaged_index_still_shows_every_item_completed(
    stack: FaultStack, workspace: Workspace, webhook: httpx.Client, damage: Callable[[Path], None]
) -> None:
    """A finished run's results index damaged: every item is still completed with its result, none pending."""
    instance = f"damaged-index-{damage.__name__.replace('_', '-')}"
    start_worker(stack, workspace)
    accepted = webhook.post("/api/start-fanout", json={"count": COUNT, "instance_id": instance})
    assert accepted.status_code == 202, accepted.text
    done = poll_until_finished(webhook, accepted.json()["statusQueryGetUri"], timeout=300)
    assert done.json()["runtimeStatus"] == "Completed", done.text
    expected = [("completed", f"Processed item-{index}") for index in range(1, COUNT + 1)]

    def results() -> list[tuple[str, object]]:
        page = webhook.get(f"/api/instances/{instance}/results", params={"limit": COUNT})
        assert page.status_code == 200, page.text
        return [(row["status"], row["result"]) for row in page.json()["items"]]

    assert results() == expected
    (slots,) = stack.results.glob(f"fanout/{instance}/results-index/slots")
    damage(slots)
    assert results() == expected

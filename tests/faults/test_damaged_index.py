"""The results index of a finished run damaged on disk: the results API still shows every item completed."""

from __future__ import annotations

import os
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


DAMAGES = {"two slots swapped": swap_two_slots, "random bytes": random_bytes}


def instance_of(damage: str) -> str:
    return f"damaged-index-{damage.replace(' ', '-')}"


@pytest.fixture(scope="module")
def finished(stack: FaultStack, tmp_path_factory: pytest.TempPathFactory) -> None:
    """One finished run of COUNT items per damage, run side by side by one worker, which is stopped before
    any test damages an index."""
    stack.cancel_unfinished()
    local = stack.local
    try:
        start_worker(stack, Workspace(tmp_path_factory.mktemp("damaged-index"), storage=stack.results))
        with httpx.Client(base_url=local.webhook_url, headers=local.webhook_headers, timeout=30) as client:
            status_urls = []
            for damage in DAMAGES:
                accepted = client.post("/api/start-fanout", json={"count": COUNT, "instance_id": instance_of(damage)})
                assert accepted.status_code == 202, accepted.text
                status_urls.append(accepted.json()["statusQueryGetUri"])
            for status_url in status_urls:
                done = poll_until_finished(client, status_url, timeout=300)
                assert done.json()["runtimeStatus"] == "Completed", done.text
    finally:
        stack.stop_workers()
        stack.cancel_unfinished()


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_index_still_shows_every_item_completed(
    stack: FaultStack, finished: None, webhook: httpx.Client, damage: str
) -> None:
    """A finished run's results index damaged: every item is still completed with its result, none pending."""
    instance = instance_of(damage)
    expected = [("completed", f"Processed item-{index}") for index in range(1, COUNT + 1)]

    def results() -> list[tuple[str, object]]:
        page = webhook.get(f"/api/instances/{instance}/results", params={"limit": COUNT})
        assert page.status_code == 200, page.text
        return [(row["status"], row["result"]) for row in page.json()["items"]]

    assert results() == expected
    (slots,) = stack.results.glob(f"fanout/{instance}/results-index/slots")
    DAMAGES[damage](slots)
    assert results() == expected

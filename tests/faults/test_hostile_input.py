"""Hostile input against the real webhook and Prefect: each request is a 4xx with why, never a 500."""

from __future__ import annotations

import httpx
import pytest

from tests.support.fault_stack import FaultStack

pytestmark = pytest.mark.faults

DURABLE_START = "/runtime/webhooks/durabletask/orchestrators/fan_out_fan_in"
HOSTILE_BODIES = {
    "lone surrogate in an item": '{"items": ["ok", "\\ud800"]}',
    "lone surrogate in an object key": '{"items": [{"\\udfff": 1}]}',
    "lone surrogate in an item_key value": '{"items": [{"id": "\\ud800"}], "item_key": "id"}',
    "NUL in a source uri": '{"source": {"uri": "/tmp/a\\u0000b.jsonl"}}',
    "items nested 500 deep": '{"items": [' + "[" * 500 + "1" + "]" * 500 + "]}",
}


@pytest.mark.parametrize("body", HOSTILE_BODIES.values(), ids=HOSTILE_BODIES.keys())
def test_a_hostile_start_is_refused_on_both_route_tables(stack: FaultStack, webhook: httpx.Client, body: str) -> None:
    """The start answers 422 on /api/ and 400 on the Durable Functions route, with a message; the webhook stays healthy."""
    headers = {"Content-Type": "application/json"}
    plain = webhook.post("/api/start-fanout", content=body, headers=headers)
    durable = webhook.post(DURABLE_START, content=body, headers=headers)
    assert (plain.status_code, durable.status_code) == (422, 400), (plain.text, durable.text)
    assert plain.json()["detail"] and durable.json()["ExceptionMessage"]
    assert webhook.get("/health").status_code == 200


@pytest.mark.parametrize("query", ["top=" + "9" * 5000, "top=%C2%B2", "createdTimeFrom=%00"])
def test_a_hostile_list_query_is_400(stack: FaultStack, webhook: httpx.Client, query: str) -> None:
    """A list query Python cannot read as asked is a 400 on both route tables."""
    for path in ("/api/instances", "/runtime/webhooks/durabletask/instances"):
        assert webhook.get(f"{path}?{query}").status_code == 400, path

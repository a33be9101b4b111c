"""The I/O pipeline example: an async GET per item, retried on 5xx, failed on 4xx (in-process service)."""

from __future__ import annotations

from typing import Any

import httpx

from fanout.engine.async_items import run_async_items
from fanout.engine.processor_kind import processor_kind
from fanout.engine.retry_policy import RetryPolicy
from fanout.inputs.items import ItemValues
from flows.http_enrich import Enrich, enrich, enrich_sync, urls
from tests.support.echo_service import echo_app


def processor() -> Enrich:
    return Enrich(transport=httpx.ASGITransport(app=echo_app(0.0)))


def run(items: list[Any], retries: int = 0) -> dict[str, Any]:
    values = ItemValues({str(index): item for index, item in enumerate(items)})
    policy = RetryPolicy(retries=retries, delay_seconds=0, jitter_factor=0)
    outcomes = run_async_items(
        processor(), [str(index) for index in range(len(items))], policy, "demo", 10, None, values
    )
    return {outcome.item: outcome for outcome in outcomes}


def test_the_example_processors_are_async_and_sync() -> None:
    """`enrich` runs on the event loop, `enrich_sync` on threads."""
    assert processor_kind(enrich) == "async" and processor_kind(enrich_sync) == "sync"


def test_each_item_gets_the_service_reply() -> None:
    """Every item's result holds its id, the status and the service's JSON body."""
    outcomes = run(list(urls("http://echo.test", 3)))
    assert outcomes["0"].value == {"id": 1, "status": 200, "body": {"id": "1", "enriched": True}}
    assert len(outcomes) == 3 and all(outcome.ok for outcome in outcomes.values())


def test_a_5xx_is_retried_as_transient() -> None:
    """A server error is retried, and the item fails only after the last retry."""
    [outcome] = run([{"id": 1, "url": "http://echo.test/fail/503"}], retries=2).values()
    assert outcome.attempts == 3 and outcome.error is not None and "TransientError" in outcome.error


def test_a_4xx_fails_the_item_at_once() -> None:
    """A client error is not retried."""
    [outcome] = run([{"id": 1, "url": "http://echo.test/fail/404"}], retries=2).values()
    assert outcome.attempts == 1 and outcome.error is not None and "404" in outcome.error

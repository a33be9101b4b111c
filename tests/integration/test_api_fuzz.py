"""Generated requests for every route of the webhook's OpenAPI document: none gets a 5xx but Prefect's 503,
and every answer matches the response schema the document gives for its status code.

Schemathesis builds requests from the document (bodies from the request
model's schema, path, query and header values from theirs), valid and not,
and sends them to the app in-process, over a stand-in for Prefect that holds
an instance in each state. The bearer token is sent with each, so the routes
behind it are reached.
"""

from __future__ import annotations

from collections import Counter

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import response_schema_conformance

from tests.support.fake_instances import FakeManagedRuns
from tests.support.webhook_client import AUTH, make_app

EXAMPLES_PER_ROUTE = 110
"""Enough for at least 2,000 requests across the document's operations."""

SEEDED = {"done": "COMPLETED", "busy": "RUNNING", "broke": "FAILED", "waiting": "SCHEDULED", "held": "PAUSED"}


def fuzzed_app() -> FastAPI:
    """The webhook over in-memory runs holding one instance in each state the routes tell apart."""
    runs = FakeManagedRuns()
    for instance_id, state in SEEDED.items():
        runs.add_run(instance_id, state)
    return make_app(
        runs, webhook_max_body_bytes=64_000, webhook_max_queued_starts=100_000, webhook_max_wait_seconds=0.01
    )


APP = fuzzed_app()
SCHEMA = schemathesis.openapi.from_dict(APP.openapi())
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES_PER_ROUTE,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)


def send(case: schemathesis.Case, sent: Counter[str]) -> None:  # type: ignore[type-arg]
    """Send one generated request with the token in its header; check its status and its body's schema."""
    if case.query:
        case.query.pop("code", None)  # the token travels in the header
    if case.headers:
        case.headers.pop("authorization", None)
    response = case.call(app=APP, headers=AUTH)
    sent[case.operation.label] += 1
    assert response.status_code < 500 or response.status_code == 503, (case.as_curl_command(), response.text)
    case.validate_response(response, checks=[response_schema_conformance])


def test_no_generated_request_gets_a_server_error() -> None:
    """Generated requests, valid or not, to every operation are answered below 500 (or 503), as documented."""
    sent: Counter[str] = Counter()
    for result in SCHEMA.get_all_operations():
        operation = result.ok()
        FUZZ_SETTINGS(given(case=operation.as_strategy())(lambda case: send(case, sent)))()
    operations = {f"{method.upper()} {path}" for path, item in APP.openapi()["paths"].items() for method in item}
    assert set(sent) == operations
    assert sum(sent.values()) >= 2000, sent

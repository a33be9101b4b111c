"""Bad input never starts a run and never breaks the webhook: each kind gets a 4xx with a message."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.support.fake_instances import FakeManagedRuns
from tests.support.fake_runs import FakeRuns
from tests.support.webhook_client import AUTH, call, make_app

JSON = {**AUTH, "Content-Type": "application/json"}
MAX_BODY = 4096


def post(body: bytes | str, headers: dict[str, str | bytes] | None = None) -> dict[str, Any]:
    return {"method": "POST", "url": "/api/start-fanout", "content": body, "headers": headers or JSON}


def post_json(value: Any) -> dict[str, Any]:
    return post(json.dumps(value))


BAD_REQUESTS: dict[str, tuple[dict[str, Any], int]] = {
    "malformed json": (post("{"), 400),
    "trailing garbage": (post('{"count": 5} x'), 400),
    "single quotes": (post("{'count': 5}"), 400),
    "not utf-8": (post(b"\xff\xfe{}"), 400),
    "json array": (post_json([1, 2]), 422),
    "json string": (post_json("count=5"), 422),
    "json number": (post_json(5), 422),
    "json null": (post("null"), 422),
    "json true": (post("true"), 422),
    "unknown field": (post_json({"cnt": 5}), 422),
    "count as string": (post_json({"count": "5"}), 422),
    "count as float": (post_json({"count": 5.5}), 422),
    "count as bool": (post_json({"count": True}), 422),
    "count zero": (post_json({"count": 0}), 422),
    "count negative": (post_json({"count": -3}), 422),
    "count too large": (post_json({"count": 100_001}), 422),
    "count huge": (post_json({"count": 10**30}), 422),
    "count and items": (post_json({"count": 2, "items": ["a"]}), 422),
    "items not a list": (post_json({"items": "abc"}), 422),
    "items empty": (post_json({"items": []}), 422),
    "items duplicated": (post_json({"items": ["a", "a"]}), 422),
    "objects duplicated": (post_json({"items": [{"a": 1, "b": 2}, {"b": 2, "a": 1}]}), 422),
    "item keys duplicated": (post_json({"items": [{"id": 1}, {"id": 1, "x": 2}], "item_key": "id"}), 422),
    "item without its key": (post_json({"items": [{"id": 1}, {"x": 2}], "item_key": "id"}), 422),
    "item_key with count": (post_json({"count": 2, "item_key": "id"}), 422),
    "items and source": (post_json({"items": ["a"], "source": {"uri": "/tmp/a.jsonl"}}), 422),
    "source outside the roots": (post_json({"source": {"uri": "/etc/passwd", "format": "lines"}}), 403),
    "generator not allowed": (post_json({"source": {"generator": "os:listdir"}}), 403),
    "source of unknown format": (post_json({"source": {"uri": "/tmp/a", "format": "xml"}}), 422),
    "instance id with space": (post_json({"instance_id": "bad id"}), 422),
    "instance id with slash": (post_json({"instance_id": "a/b"}), 422),
    "instance id too long": (post_json({"instance_id": "a" * 200}), 422),
    "instance id as number": (post_json({"instance_id": 7}), 422),
    "text/plain body": (post('{"count": 5}', {**AUTH, "Content-Type": "text/plain"}), 415),
    "form body": (post("count=5", {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}), 415),
    "oversized body": (post(json.dumps({"items": [f"item-{i}" for i in range(2000)]})), 413),
    "lying content-length": (post("{}", {**JSON, "Content-Length": str(MAX_BODY + 1)}), 413),
    "empty idempotency key": (post("{}", {**JSON, "Idempotency-Key": ""}), 400),
    "idempotency key too long": (post("{}", {**JSON, "Idempotency-Key": "k" * 129}), 400),
    "idempotency key with space": (post("{}", {**JSON, "Idempotency-Key": "a b"}), 400),
    "lone surrogate in an item": (post('{"items": ["ok", "\\ud800"]}'), 422),
    "lone surrogate in an object key": (post('{"items": [{"\\udfff": 1}]}'), 422),
    "lone surrogate in an item_key value": (post('{"items": [{"id": "\\ud800"}], "item_key": "id"}'), 422),
    "lone surrogate beside the item_key": (post('{"items": [{"id": 1, "x": "\\ud800"}], "item_key": "id"}'), 422),
    "lone surrogate as item_key": (post('{"items": [{"id": 1}], "item_key": "\\ud800"}'), 422),
    "lone surrogate as a field name": (post('{"\\ud800": 1}'), 422),
    "items nested 65 deep": (post('{"items": [' + "[" * 64 + "1" + "]" * 64 + "]}"), 422),
    "items nested 500 deep": (post('{"items": [' + "[" * 500 + "1" + "]" * 500 + "]}"), 422),
    "generator params nested 65 deep": (
        post('{"source": {"generator": "a:b", "params": {"p": ' + "[" * 64 + "]" * 64 + "}}}"),
        422,
    ),
    "NUL in a source uri": (post_json({"source": {"uri": "/tmp/a\u0000b.jsonl"}}), 422),
    "content-length of 5,000 digits": (post("{}", {**JSON, "Content-Length": "9" * 5000}), 413),
    "content-length not ascii digits": (post("{}", {**JSON, "Content-Length": b"\xb2"}), 400),
    "GET on start": ({"method": "GET", "url": "/api/start-fanout", "headers": AUTH}, 405),
    "PUT on start": ({"method": "PUT", "url": "/api/start-fanout", "headers": AUTH}, 405),
    "DELETE on start": ({"method": "DELETE", "url": "/api/start-fanout", "headers": AUTH}, 405),
    "PATCH on status": ({"method": "PATCH", "url": "/api/instances/abc", "headers": AUTH}, 405),
    "GET on terminate": ({"method": "GET", "url": "/api/instances/abc/terminate", "headers": AUTH}, 405),
    "unknown path": ({"method": "POST", "url": "/api/start", "headers": AUTH}, 404),
    "bad instance id in path": ({"method": "GET", "url": "/api/instances/a%20b", "headers": AUTH}, 404),
    "restart unknown instance": ({"method": "POST", "url": "/api/instances/ghost/restart", "headers": AUTH}, 404),
    "purge unknown instance": ({"method": "DELETE", "url": "/api/instances/ghost", "headers": AUTH}, 404),
}


@pytest.mark.parametrize("request_options, expected", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_request_is_refused_with_a_message(request_options: dict[str, Any], expected: int) -> None:
    """The bad request gets the expected 4xx and a message, nothing starts, and the app stays healthy."""
    runs = FakeRuns()
    app = make_app(runs, webhook_max_body_bytes=MAX_BODY)
    options = dict(request_options)
    response = call(app, options.pop("method"), options.pop("url"), **options)
    assert response.status_code == expected, response.text
    assert response.json()["detail"]
    assert runs.runs == {} and "start" not in runs.calls
    assert call(app, "GET", "/health").status_code == 200
    assert call(app, "POST", "/api/start-fanout").status_code == 202


def test_there_are_at_least_thirty_kinds_of_bad_request() -> None:
    """The catalogue above covers at least 30 distinct kinds of bad request."""
    assert len(BAD_REQUESTS) >= 30


LIST_QUERIES = ["top=" + "9" * 5000, "top=%C2%B2", "top=0", "createdTimeFrom=%00", "runtimeStatus=%F0%9F%92%A5"]


@pytest.mark.parametrize("query", LIST_QUERIES)
def test_hostile_list_queries_are_400(query: str) -> None:
    """A list query Python cannot read as asked (huge or non-ASCII digits, NUL) is a 400 on both route tables."""
    app = make_app(FakeManagedRuns())
    for path in ("/api/instances", "/runtime/webhooks/durabletask/instances"):
        response = call(app, "GET", f"{path}?{query}")
        assert response.status_code == 400, (path, response.text)


def test_items_nested_64_deep_are_accepted() -> None:
    """Nesting up to the limit is an ordinary request: 202, and the run is created."""
    runs = FakeRuns()
    body = '{"items": [' + "[" * 63 + "1" + "]" * 63 + "]}"
    assert call(make_app(runs), "POST", "/api/start-fanout", content=body, headers=JSON).status_code == 202
    assert len(runs.runs) == 1


def test_lone_surrogate_on_the_durable_start_is_400() -> None:
    """The Durable Functions start answers 400, in its own shape, to a lone surrogate, even in a twice-encoded body."""
    runs = FakeRuns()
    app = make_app(runs)
    url = "/runtime/webhooks/durabletask/orchestrators/fan_out_fan_in"
    for body in ('{"items": ["\\ud800"]}', json.dumps('{"items": ["\\ud800"]}'), '"\\ud800"'):
        response = call(app, "POST", url, content=body, headers=JSON)
        assert response.status_code == 400, response.text
        assert response.json()["ExceptionMessage"]
    assert runs.runs == {}


def test_a_hostile_continuation_token_is_400() -> None:
    """A continuation token that decodes to deeply nested JSON is refused as a bad token, not a crash."""
    token = base64.urlsafe_b64encode(b"[" * 40_000).decode()
    app = make_app(FakeManagedRuns())
    for path in ("/api/instances", "/runtime/webhooks/durabletask/instances"):
        response = call(app, "GET", path, headers={**AUTH, "x-ms-continuation-token": token})
        assert response.status_code == 400, (path, response.text)


@pytest.mark.parametrize("authorization", [b"Basic \xe9\xe9", b"Bearer \xe9", b"Basic \x00", b"Basic " + b"=" * 9])
def test_hostile_credentials_are_401(authorization: bytes) -> None:
    """Credentials that are not ASCII, base64 or UTF-8 are wrong credentials: 401 on every route that takes them."""
    app = make_app(FakeManagedRuns())
    for path in ("/runtime/webhooks/durabletask/instances", "/api/instances", "/openapi.json"):
        response = call(app, "GET", path, headers={"Authorization": authorization})  # type: ignore[dict-item]
        assert response.status_code == 401, (path, response.text)

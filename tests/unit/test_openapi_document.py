"""The webhook's OpenAPI document describes its answers and how to authenticate."""

from __future__ import annotations

from typing import Any

from tests.support.fake_instances import FakeManagedRuns
from tests.support.webhook_client import make_app

BODYLESS = {"terminate", "suspend", "resume", "rewind"}
"""Durable Functions' management posts answer 202 with no body."""


def document() -> dict[str, Any]:
    return make_app(FakeManagedRuns()).openapi()


def success_schemas(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        status: answer.get("content", {}).get("application/json", {}).get("schema", {})
        for status, answer in operation["responses"].items()
        if status.startswith("2")
    }


def test_every_answer_with_a_body_has_a_schema() -> None:
    """Each operation's success answers name a schema, except the bodyless 202s of Durable Functions' posts."""
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            schemas = success_schemas(operation)
            assert schemas, (method, path)
            bodyless = path.rsplit("/", 1)[-1] in BODYLESS and path.startswith("/runtime/")
            assert all(bool(schema) != bodyless for schema in schemas.values()), (method, path, schemas)


def test_the_json_names_are_durable_functions() -> None:
    """The models keep Durable Functions' camelCase and PascalCase names in the document."""
    schemas = document()["components"]["schemas"]
    assert "statusQueryGetUri" in schemas["CheckStatusPayload"]["properties"]
    assert {"runtimeStatus", "customStatus", "createdTime"} <= set(schemas["DurableStatus"]["properties"])
    assert {"instancesDeleted", "filesDeleted"} <= set(schemas["PurgeReport"]["properties"])
    assert {"Message", "ExceptionMessage"} == set(schemas["DurableError"]["properties"])


def test_the_status_routes_document_their_202_and_its_headers() -> None:
    """A status answers 202 while the instance runs, with Location and Retry-After."""
    paths = document()["paths"]
    for path in ("/api/instances/{instance_id}", "/runtime/webhooks/durabletask/instances/{instance_id}"):
        accepted = paths[path]["get"]["responses"]["202"]
        assert set(accepted["headers"]) == {"Location", "Retry-After"}


def test_the_token_forms_are_security_schemes() -> None:
    """`/api/` takes the bearer token; the Durable Functions routes also take Basic and `code=`."""
    spec = document()
    assert set(spec["components"]["securitySchemes"]) == {"bearerToken", "basicPassword", "code"}
    assert spec["paths"]["/api/start-fanout"]["post"]["security"] == [{"bearerToken": []}]
    durable = spec["paths"]["/runtime/webhooks/durabletask/instances"]["get"]["security"]
    assert durable == [{"bearerToken": []}, {"basicPassword": []}, {"code": []}]

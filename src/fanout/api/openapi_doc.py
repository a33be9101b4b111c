"""What the routes read by hand, described for the OpenAPI document.

The start routes read their body and the list routes their query string themselves, so FastAPI cannot
see them; these `openapi_extra` pieces describe them, so `/docs`, client generators and fuzzers know.
"""

from __future__ import annotations

from typing import Any

from fanout.inputs.request import FanoutRequest

RUNTIME_STATUSES = ["Pending", "Running", "Completed", "Failed", "Terminated", "Suspended"]


def inline_schema(model: type[FanoutRequest]) -> dict[str, Any]:
    """The model's JSON schema with its `$defs` written in place, so it stands alone in any document."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def resolved(node: Any) -> Any:
        if isinstance(node, dict):
            reference = node.get("$ref")
            if isinstance(reference, str) and reference.startswith("#/$defs/"):
                return resolved(definitions[reference.removeprefix("#/$defs/")])
            return {key: resolved(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolved(value) for value in node]
        return node

    return resolved(schema)  # type: ignore[no-any-return]


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


START_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "description": "The flow's request; an empty body starts the seed's 5 items.",
        "content": {"application/json": {"schema": inline_schema(FanoutRequest)}},
    }
}

LIST_FILTERS = [
    _query(
        "runtimeStatus",
        "Comma list of: " + ", ".join(RUNTIME_STATUSES) + "; given more than once, any of every value.",
        {"type": "string"},
    ),
    _query("createdTimeFrom", "ISO 8601 (naive: UTC), inclusive.", {"type": "string", "format": "date-time"}),
    _query("createdTimeTo", "ISO 8601 (naive: UTC), inclusive.", {"type": "string", "format": "date-time"}),
]

LIST_QUERY: dict[str, Any] = {
    "parameters": [
        *LIST_FILTERS,
        _query("instanceIdPrefix", "Only instance ids starting with it.", {"type": "string"}),
        _query("top", "Page size.", {"type": "integer", "minimum": 1, "maximum": 1000}),
        _query("continuationToken", "The page to read, as `x-ms-continuation-token` named it.", {"type": "string"}),
        _query("showInput", "Include each instance's input.", {"type": "boolean"}),
    ]
}

PURGE_QUERY: dict[str, Any] = {"parameters": list(LIST_FILTERS)}


def _flags(*names: str) -> dict[str, Any]:
    return {"parameters": [_query(name, f"`{name}`: true or false.", {"type": "boolean"}) for name in names]}


STATUS_QUERY = _flags("showInput", "showHistory", "showHistoryOutput", "returnInternalServerErrorOnFailure")
RESTART_QUERY = _flags("restartWithNewInstanceId")
REASON_QUERY: dict[str, Any] = {
    "parameters": [_query("reason", "Why, as the run's state message.", {"type": "string"})]
}

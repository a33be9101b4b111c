"""The bodies Durable Functions' HTTP API answers with, built from fanout's runs: the management links,
an instance's status in Durable Functions' field names, its history from the run's item table, and the
query-string readers (`BadQuery` for what they cannot read).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from fanout.api.schemas import CheckStatusPayload
from fanout.inputs.request import FanoutRequest, plan_items
from fanout.service.instance_management import BadQuery, InstanceQuery
from fanout.service.runs import RunRecord
from fanout.service.status import FINISHED, CustomStatus, RuntimeStatus

BASE_PATH = "/runtime/webhooks/durabletask"
ORCHESTRATOR = "fan_out_fan_in"
"""The seed's orchestrator function name; it names fanout's deployment."""

TRUE = {"true", "1", "yes"}
FALSE = {"false", "0", "no"}


def instance_url(base_url: str, instance_id: str) -> str:
    return f"{base_url}{BASE_PATH}/instances/{quote(instance_id, safe='')}"


def management_payload(base_url: str, instance_id: str, code: str | None, ui_url: str | None) -> CheckStatusPayload:
    """Every management link of an instance; each carries `code=` when the caller authenticated with it."""
    status = instance_url(base_url, instance_id)
    only = f"?code={quote(code, safe='')}" if code else ""
    more = f"&code={quote(code, safe='')}" if code else ""
    return CheckStatusPayload(
        id=instance_id,
        status_query_get_uri=f"{status}{only}",
        send_event_post_uri=f"{status}/raiseEvent/{{eventName}}{only}",
        terminate_post_uri=f"{status}/terminate?reason={{text}}{more}",
        rewind_post_uri=f"{status}/rewind?reason={{text}}{more}",
        purge_history_delete_uri=f"{status}{only}",
        restart_post_uri=f"{status}/restart{only}",
        suspend_post_uri=f"{status}/suspend?reason={{text}}{more}",
        resume_post_uri=f"{status}/resume?reason={{text}}{more}",
        ui_url=ui_url,
    )


def status_body(
    document: dict[str, Any], show_input: bool, history: list[dict[str, Any]] | None, name: str = ORCHESTRATOR
) -> dict[str, Any]:
    """The status document in Durable Functions' shape; its `name` is the orchestrator's (`name`)."""
    body = {**document, "name": name}
    if not show_input:
        body["input"] = None
    if history is not None:
        body["history"] = history
    return body


def list_entry(
    run: RunRecord, status: RuntimeStatus, custom: CustomStatus, show_input: bool, name: str = ORCHESTRATOR
) -> dict[str, Any]:
    """One instance in a list: its status fields without the output (GET the instance for that), with the
    `customStatus` its status document has."""
    return {
        "name": run.flow or name,
        "instanceId": run.instance_id,
        "runtimeStatus": status.value,
        "input": run.input if show_input else None,
        "output": run.state_message if status in (RuntimeStatus.FAILED, RuntimeStatus.TERMINATED) else None,
        "customStatus": custom.model_dump(),
        "createdTime": _iso(run.created),
        "lastUpdatedTime": _iso(run.updated),
    }


def history(
    run: RunRecord, status: RuntimeStatus, rows: list[dict[str, Any]] | None, output: Any, with_output: bool
) -> list[dict[str, Any]]:
    """The run's execution history, from its item table (empty between start and end, when it has none)."""
    events: list[dict[str, Any]] = [
        {"EventType": "ExecutionStarted", "FunctionName": run.flow or ORCHESTRATOR, "Timestamp": _iso(run.created)}
    ]
    results = _results_by_item(run, output) if with_output else {}
    for row in rows or []:
        failed = row.get("status") == "failed"
        event: dict[str, Any] = {
            "EventType": "TaskFailed" if failed else "TaskCompleted",
            "FunctionName": "process_item",
            "Name": row.get("item"),
            "Status": row.get("status"),
            "Attempts": row.get("attempts"),
            "DurationSeconds": row.get("duration_s"),
            "CorrelationId": row.get("correlation_id"),
        }
        if failed:
            event["Reason"] = row.get("error") or None
        elif with_output and row.get("item") in results:
            event["Result"] = results[row["item"]]
        events.append(event)
    if status in FINISHED:
        events.append(
            {
                "EventType": "ExecutionCompleted",
                "OrchestrationStatus": status.value,
                "Result": output if with_output else None,
                "Timestamp": _iso(run.updated),
            }
        )
    return events


def _results_by_item(run: RunRecord, output: Any) -> dict[str, Any]:
    """Each item's result, from the seed run's output (a list in item order) and its planned items.

    A source's items are not read again here: the file may have changed since the run read it,
    and only the run's own reader checks it against the roots where it opens it."""
    if not isinstance(output, list) or run.flow is not None:
        return {}
    try:
        request = FanoutRequest.model_validate(run.parameters.get("request") or {})
        if request.source is not None:
            return {}
        items = plan_items(request, len(output))
    except ValueError:
        return {}
    return dict(zip(items, output, strict=True)) if len(items) == len(output) else {}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def flag(value: str | None, default: bool, name: str) -> bool:
    """A boolean query parameter (`true`/`True`/`false`...), or `BadQuery`."""
    if value is None or value == "":
        return default
    if value.lower() in TRUE:
        return True
    if value.lower() in FALSE:
        return False
    raise BadQuery(f"{name} must be true or false, got {value!r}")


def moment(value: str | None, name: str) -> datetime | None:
    """An ISO 8601 time (naive times are UTC), or `BadQuery`."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadQuery(f"{name} must be an ISO 8601 time, got {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def statuses(value: str | None) -> frozenset[RuntimeStatus]:
    """A comma list of runtimeStatus names (case-insensitive), or `BadQuery` naming the unknown one."""
    known = {status.value.lower(): status for status in RuntimeStatus}
    chosen: set[RuntimeStatus] = set()
    for name in filter(None, (part.strip() for part in (value or "").split(","))):
        if name.lower() not in known:
            raise BadQuery(
                f"unknown runtimeStatus {name!r}; known: {', '.join(sorted(s.value for s in RuntimeStatus))}"
            )
        chosen.add(known[name.lower()])
    return frozenset(chosen)


def every_value(params: Mapping[str, str], name: str) -> str | None:
    """Every value of a query parameter given once or more (`a=x&a=y`) as one comma list; None when absent."""
    getlist = getattr(params, "getlist", None)  # a query string's multi-dict; a plain mapping holds one value
    values = list(getlist(name)) if getlist is not None else ([params[name]] if name in params else [])
    return ",".join(values) if values else None


def query_from(params: Mapping[str, str], with_prefix: bool = True) -> InstanceQuery:
    """The list or purge filter the query string asks for; a repeated `runtimeStatus` is the union of its values,
    as a comma list is."""
    created_from = moment(params.get("createdTimeFrom"), "createdTimeFrom")
    created_to = moment(params.get("createdTimeTo"), "createdTimeTo")
    if created_from and created_to and created_from > created_to:
        raise BadQuery("createdTimeFrom is after createdTimeTo")
    return InstanceQuery(
        created_from=created_from,
        created_to=created_to,
        statuses=statuses(every_value(params, "runtimeStatus")),
        prefix=(params.get("instanceIdPrefix") or None) if with_prefix else None,
    )


def top_from(value: str | None) -> int | None:
    """`top`: a page size of 1..1000, or None for every instance."""
    if value is None or value == "":
        return None
    if not (value.isascii() and value.isdigit() and len(value) <= 4) or not 1 <= int(value) <= 1000:
        raise BadQuery(f"top must be an integer from 1 to 1000, got {value!r}")
    return int(value)


def now() -> datetime:
    return datetime.now(UTC)

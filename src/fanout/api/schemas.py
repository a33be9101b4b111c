"""The bodies the webhook answers with, as pydantic models, so `/openapi.json` describes every answer.

JSON names are Durable Functions' (`statusQueryGetUri`, `runtimeStatus`, `ExceptionMessage`):
camelCase on fanout's own bodies, PascalCase on Durable Functions' errors and history
events, from snake_case Python names by an alias generator. A field that today's body
leaves out when it has nothing to say (`outputUri`, `history`, an event's `Reason`) is
left unset, and its route serializes with `response_model_exclude_unset`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel, to_pascal

from fanout.service.status import CustomStatus, RuntimeStatus, StatusDocument


class CamelModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class PascalModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True)


class ManagementUrls(CamelModel):
    """What a start, terminate or restart on `/api/` answers: where to poll and manage the instance."""

    id: str
    status_query_get_uri: str
    terminate_post_uri: str
    restart_post_uri: str
    purge_history_delete_uri: str
    ui_url: str | None = Field(description="The run's Prefect page; null until its run exists.")


class CheckStatusPayload(CamelModel):
    """Durable Functions' check-status payload: every management link, each with `code=` when the start had it."""

    id: str
    status_query_get_uri: str
    send_event_post_uri: str
    terminate_post_uri: str
    rewind_post_uri: str
    purge_history_delete_uri: str
    restart_post_uri: str
    suspend_post_uri: str
    resume_post_uri: str
    ui_url: str | None = Field(description="The run's Prefect page; null until its run exists.")


class InstanceStatus(StatusDocument):
    """An instance's status on `/api/`; past `FANOUT_OUTPUT_INLINE_LIMIT` items `output` is null and
    `outputUri` names the results pages."""

    output_uri: str | None = Field(None, alias="outputUri")


class HistoryEvent(PascalModel):
    """One event of an instance's history: the start, one per item listed, and the end once finished."""

    event_type: Literal["ExecutionStarted", "TaskCompleted", "TaskFailed", "ExecutionCompleted"]
    function_name: str | None = None
    timestamp: str | None = None
    name: Any = Field(None, description="The item.")
    status: str | None = None
    attempts: int | None = None
    duration_seconds: int | float | None = None
    correlation_id: str | None = None
    reason: str | None = Field(None, description="A failed item's last error.")
    result: Any = Field(None, description="With showHistoryOutput=true: the item's (or the run's) result.")
    orchestration_status: RuntimeStatus | None = None


class DurableStatus(StatusDocument):
    """An instance's status on the Durable Functions routes: `input` is null with showInput=false, and
    `history` is there with showHistory=true."""

    input: Any = None
    history: list[HistoryEvent] | None = None


class InstanceEntry(CamelModel):
    """One instance in a list: its status without the output (a Failed or Terminated one's reason instead)."""

    name: str
    instance_id: str
    runtime_status: RuntimeStatus
    input: Any
    output: Any
    custom_status: CustomStatus
    created_time: str | None = Field(description="ISO 8601.")
    last_updated_time: str | None = Field(description="ISO 8601.")


class ResultItem(BaseModel):
    """One item's row on a results page."""

    index: int
    key: str
    status: Literal["completed", "failed", "pending"]
    result: Any = None
    error: str | None = None


class ResultsPage(CamelModel):
    """One page of an instance's results in item order; `next` and `nextUri` are null on the last page."""

    items: list[ResultItem]
    total: int
    next: int | None
    next_uri: str | None


class PurgeReport(CamelModel):
    """What a purge deleted; the storage counts are null for a result storage nothing here deletes from."""

    instances_deleted: int
    runs_deleted: int
    checkpoints_deleted: int | None
    outputs_deleted: int | None
    files_deleted: int | None
    artifacts_deleted: int


class NothingPurged(CamelModel):
    """A purge of an instance that does not exist."""

    instances_deleted: int = 0


class Health(CamelModel):
    """Whether the webhook reaches Prefect; `detail` says why not, `queuedStarts` counts starts not yet sent."""

    status: Literal["ok", "unavailable", "starting"]
    detail: str | None = None
    queued_starts: int | None = None


class ErrorDetail(BaseModel):
    """An error on fanout's own routes; FastAPI's own parameter checks give a list of problems."""

    detail: str | list[dict[str, Any]]


class DurableError(PascalModel):
    """An error in Durable Functions' shape (`ExceptionMessage` is what its client reads)."""

    message: str
    exception_message: str


class UnfinishedPurge(DurableError):
    """A purge of an instance that has not finished: nothing deleted."""

    instances_deleted: int = Field(0, alias="instancesDeleted")


class EventDiscarded(PascalModel):
    """A raised event, accepted and discarded: no fan-out/fan-in orchestration waits for one."""

    message: str

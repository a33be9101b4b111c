"""The seed's status document, built from a Prefect flow run.

Prefect state type  ->  runtimeStatus
    SCHEDULED, PENDING   Pending     (also AwaitingRetry, Late: about to run again)
    RUNNING, CANCELLING  Running     (Cancelling: terminate asked, not yet done)
    PAUSED               Suspended
    COMPLETED            Completed
    FAILED, CRASHED      Failed
    CANCELLED            Terminated
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flows.progress import progress_from_labels
from flows.request import FanoutRequest, item_count


class RuntimeStatus(str, Enum):
    """The seed's `runtimeStatus` values."""

    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETED = "Completed"
    FAILED = "Failed"
    TERMINATED = "Terminated"
    SUSPENDED = "Suspended"


STATUS_BY_STATE_TYPE: dict[str, RuntimeStatus] = {
    "SCHEDULED": RuntimeStatus.PENDING,
    "PENDING": RuntimeStatus.PENDING,
    "RUNNING": RuntimeStatus.RUNNING,
    "CANCELLING": RuntimeStatus.RUNNING,
    "PAUSED": RuntimeStatus.SUSPENDED,
    "COMPLETED": RuntimeStatus.COMPLETED,
    "FAILED": RuntimeStatus.FAILED,
    "CRASHED": RuntimeStatus.FAILED,
    "CANCELLED": RuntimeStatus.TERMINATED,
}

FINISHED = frozenset({RuntimeStatus.COMPLETED, RuntimeStatus.FAILED, RuntimeStatus.TERMINATED})


def runtime_status(state_type: str | None) -> RuntimeStatus:
    """The seed's status for a Prefect state type (a run with no state yet is Pending)."""
    if state_type is None:
        return RuntimeStatus.PENDING
    return STATUS_BY_STATE_TYPE.get(state_type.upper(), RuntimeStatus.PENDING)


class CustomStatus(BaseModel):
    """Live progress of the run, as its flow process last published it."""

    total: int | None = None
    completed: int = 0
    failed: int = 0


class StatusDocument(BaseModel):
    """What `GET` on a status URL answers, in the seed's field names."""

    model_config = ConfigDict(populate_by_name=True)

    name: str
    instance_id: str = Field(alias="instanceId")
    runtime_status: RuntimeStatus = Field(alias="runtimeStatus")
    input: dict[str, Any]
    output: Any = None
    custom_status: CustomStatus = Field(alias="customStatus")
    failures: list[dict[str, Any]] = Field(
        default_factory=list, description="Failed items of a finished run: item, attempts, last error."
    )
    created_time: datetime | None = Field(alias="createdTime")
    last_updated_time: datetime | None = Field(alias="lastUpdatedTime")

    @property
    def finished(self) -> bool:
        """Completed, Failed or Terminated: the status URL answers 200 and polling stops."""
        return self.runtime_status in FINISHED


SETTLED_STATE_TYPES = frozenset({"COMPLETED", "FAILED"})


def settled_failures(state_type: str | None, failures: list[dict[str, Any]] | None) -> int | None:
    """How many items failed in a run that settled every item, else None.

    A run that Completed, or Failed because too many items failed, published its
    item report after every item had finished; a crashed run, or one that failed
    before settling, did not, and its labels are the best count there is.
    """
    if state_type is None or state_type.upper() not in SETTLED_STATE_TYPES or failures is None:
        return None
    return len(failures)


def custom_status(
    labels: dict[str, Any] | None, total: int | None = None, failed_when_settled: int | None = None
) -> CustomStatus:
    """Progress from the flow run's `fanout.*` labels (all unknown before the flow publishes).

    For a settled run (`total` and `failed_when_settled` given: the request's item
    count, the failures in its item report) the counts do not come from labels:
    the flow's label updates are sent in the background, so that a busy API does
    not hold the run, and on SQLite one can be refused (503) and land a moment
    after the run's final state.
    """
    if total is not None and failed_when_settled is not None:
        return CustomStatus(total=total, completed=total - failed_when_settled, failed=failed_when_settled)
    progress = progress_from_labels(labels)
    if progress is None:
        return CustomStatus()
    return CustomStatus(total=progress.total, completed=progress.completed, failed=progress.failed)


def requested_total(parameters: dict[str, Any]) -> int | None:
    """How many items the run's `request` parameter plans, or None when it cannot be read."""
    try:
        return item_count(FanoutRequest.model_validate(parameters.get("request") or {}))
    except ValueError:
        return None

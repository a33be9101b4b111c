"""The seed's status document, built from a Prefect flow run.

Prefect's state maps to a `runtimeStatus` (Pending, Running, Suspended, Completed, Failed, Terminated);
a Crashed run stays Running while an automatic resume is still to come (src/fanout/service/resuming.py).
A status answers 200 only for a run that will not run again by itself, so a client that stops at the
first 200 never stops early.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fanout.engine.progress import progress_from_labels
from fanout.inputs.request import FanoutRequest, item_count
from fanout.service.resuming import Resume, ResumePolicy, resume_of, stale_message
from fanout.service.runs import RunRecord, Runs

logger = logging.getLogger(__name__)


class RuntimeStatus(StrEnum):
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
    """Live progress of the run, as its flow process last published it, and its automatic resumes."""

    total: int | None = None
    completed: int = 0
    failed: int = Field(0, description="Items whose processor failed for good (retries exhausted).")
    resuming: bool = Field(False, description="Crashed or rescheduled, and about to run again by itself.")
    resumes: int = Field(0, description="Attempts after the first, automatic or restarted.")


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


REPORTED_STATE_TYPES = frozenset({"COMPLETED", "FAILED"})


def reported_failures(state_type: str | None, failures: list[dict[str, Any]] | None) -> int | None:
    """How many items failed, by the run's item report, when the run published one; else None.

    A run that Completed, or Failed because too many items failed, published its
    item report after every item had finished; a crashed run, or one that failed
    before every item finished, did not, and its labels are the best count there is.
    """
    if state_type is None or state_type.upper() not in REPORTED_STATE_TYPES or failures is None:
        return None
    return len(failures)


def custom_status(
    labels: dict[str, Any] | None, total: int | None = None, failed_in_report: int | None = None
) -> CustomStatus:
    """Progress from the flow run's `fanout.*` labels; before the flow publishes, 0 of the request's `total`.

    For a run with an item report (`total` and `failed_in_report` given: the request's item
    count, the failures in its item report) the counts do not come from labels:
    the flow's label updates are sent in the background, so that a busy API does
    not hold the run, and on SQLite one can be refused (503) and land a moment
    after the run's final state.
    """
    if total is not None and failed_in_report is not None:
        return CustomStatus(total=total, completed=total - failed_in_report, failed=failed_in_report)
    progress = progress_from_labels(labels)
    if progress is None:
        return CustomStatus(total=total)
    return CustomStatus(total=progress.total, completed=progress.completed, failed=progress.failed)


def with_resume(status: CustomStatus, resume: Resume) -> CustomStatus:
    """The counts with the run's resumes; a run on its way back shows no failed items yet, because
    the coming attempt runs every item that has no checkpoint, failed ones included."""
    failed = 0 if resume.resuming else status.failed
    return status.model_copy(update={"resuming": resume.resuming, "resumes": resume.resumes, "failed": failed})


def requested_total(parameters: dict[str, Any]) -> int | None:
    """How many items the run's `request` parameter plans, or None when it cannot be read."""
    try:
        return item_count(FanoutRequest.model_validate(parameters.get("request") or {}))
    except ValueError:
        return None


def instance_custom_status(
    run: RunRecord,
    policy: ResumePolicy,
    failures: list[dict[str, Any]] | None,
    now: datetime | None = None,
    recorded: tuple[int, int] | None = None,
) -> CustomStatus:
    """The instance's `customStatus`, the one rule behind its status document and every list of instances:
    progress from its labels (the item report's counts once it has one, `failures` being its failed items), and
    its resumes.

    A finished run of another flow takes its total from `recorded`, `(total, failed)` as its last
    `durable_map` stage wrote them to result storage before the run ended, and a Completed one its failed
    items too until its item report is there: its labels' last count lands after its final state. A
    Completed run's labels without such a record still count every item as finished.
    """
    if run.flow is None:
        total = requested_total(run.parameters)
        counts = custom_status(run.labels, total, reported_failures(run.state_type, failures))
    else:
        completed_run = (run.state_type or "").upper() == "COMPLETED"
        failed = reported_failures(run.state_type, failures)
        if failed is None and completed_run and recorded is not None:
            failed = recorded[1]
        counts = custom_status(run.labels, recorded[0] if recorded else None, failed)
        if completed_run and recorded is None and counts.total is not None:
            failed = counts.failed if failed is None else failed
            counts = counts.model_copy(update={"completed": counts.total - failed, "failed": failed})
    return with_resume(counts, resume_of(run, policy, now))


async def listed_custom_status(runs: Runs, run: RunRecord, policy: ResumePolicy) -> CustomStatus:
    """`instance_custom_status` of a run as a list shows it: the failed items of a finished run come from
    its item report, and another flow's counts from its record, as in its status document."""
    finished = runtime_status(run.state_type) in FINISHED
    failures = await _failures(runs, run) if finished else None
    recorded = await _recorded(runs, run) if finished else None
    return instance_custom_status(run, policy, failures, recorded=recorded)


async def status_document(
    runs: Runs, run: RunRecord, name: str, policy: ResumePolicy | None = None, now: datetime | None = None
) -> StatusDocument:
    """The seed's status fields for the instance's latest run (`policy`: its automatic resumes); for a run
    of another flow, its parameters as input and its return value as output."""
    policy = policy or ResumePolicy()
    resume = resume_of(run, policy, now)
    status = RuntimeStatus.RUNNING if resume.after_crash else runtime_status(run.state_type)
    output: Any = None
    failures: list[dict[str, Any]] | None = None
    if status is RuntimeStatus.COMPLETED:
        output, failures = await _completed_output(runs, run)
    elif status in FINISHED:
        output = stale_message(run.state_message, policy) if resume.stale else run.state_message
    if status in FINISHED and failures is None:
        failures = await _failures(runs, run)
    recorded = await _recorded(runs, run) if status in FINISHED else None
    return StatusDocument(
        name=run.flow or name,
        instance_id=run.instance_id,
        runtime_status=status,
        input=run.input,
        output=output,
        custom_status=instance_custom_status(run, policy, failures, now, recorded),
        failures=failures or [],
        created_time=run.created,
        last_updated_time=run.updated,
    )


async def _completed_output(runs: Runs, run: RunRecord) -> tuple[Any, list[dict[str, Any]] | None]:
    """A Completed run's output and failed items: the seed's output record, or another flow's return value."""
    try:
        if run.flow is not None:
            return await runs.flow_result(run), None
        recorded = await runs.output(run)
        return recorded.output, recorded.failures
    except Exception as error:  # noqa: BLE001 - status still answers; the output is unreadable here
        logger.warning("cannot read the output of %s: %s", run.flow_run_id, error)
        return None, None


async def _failures(runs: Runs, run: RunRecord) -> list[dict[str, Any]] | None:
    """The finished run's failed items; None when it has no report or it cannot be read (logged)."""
    try:
        return await runs.failures(run)
    except Exception as error:  # noqa: BLE001 - status still answers without the report
        logger.warning("cannot read the item report of %s: %s", run.flow_run_id, error)
        return None


async def _recorded(runs: Runs, run: RunRecord) -> tuple[int, int] | None:
    """Another flow's `(total, failed)` as its last stage recorded them; None for the seed's runs, which
    count from their request, and when there is no record or it cannot be read (logged)."""
    if run.flow is None:
        return None
    try:
        return await runs.recorded_items(run)
    except Exception as error:  # noqa: BLE001 - status still answers, from the run's labels
        logger.warning("cannot read the item record of %s: %s", run.flow_run_id, error)
        return None

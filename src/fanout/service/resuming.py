"""Whether a crashed run will be resumed by itself, so the status never calls it finished too early.

Prefect calls Crashed final, but a fanout deployment run that crashes is resumed as the same flow run
while automatic retries remain. The status reads such a run as Running or Pending until it is resumed,
its retries are used up, or nothing resumed it within the deadline; the table is in
docs/design/crash-resume.md.
A Running run whose host died answers `resuming` too, from the moment a standby warm worker
(src/fanout/worker/standby.py) marks it `fanout.silent`; a mark older than the run's current state is an
earlier attempt's and means nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fanout.core.settings import ResumeSettings
    from fanout.service.runs import RunRecord

WAITING_AGAIN = frozenset({"SCHEDULED", "PENDING"})
SILENT_LABEL = "fanout.silent"
"""Set by a standby on a Running run it found silent: when it noticed (ISO 8601); empty once it heard from it again."""


@dataclass(frozen=True)
class ResumePolicy:
    """How many automatic resumes a run gets, and how long a crash may wait for one."""

    max_auto_retries: int = 3
    deadline_seconds: float = 300.0

    @classmethod
    def from_settings(cls, settings: ResumeSettings) -> ResumePolicy:
        return cls(settings.max_auto_retries, float(settings.resume_deadline_seconds))


@dataclass(frozen=True)
class Resume:
    """What the status says about a run's automatic resumes."""

    after_crash: bool  # Crashed, and a resume is still to come: report Running, not Failed
    resuming: bool  # on its way back to work (crashed or scheduled again after an attempt)
    resumes: int  # attempts after the first: done, or under way
    stale: bool = False  # Crashed with retries left, but nothing resumed it within the deadline


def crashed_at(run: RunRecord) -> datetime | None:
    """When the run entered its current state (its Prefect state's timestamp, else its last update)."""
    stamp: Any = getattr(run.state, "timestamp", None)
    return stamp if isinstance(stamp, datetime) else run.updated


def silent_since(run: RunRecord) -> datetime | None:
    """When a standby found the run silent in its current state, or None (never, or it spoke again)."""
    value = run.labels.get(SILENT_LABEL)
    try:
        noticed = datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    entered = crashed_at(run)
    if noticed is None or noticed.tzinfo is None or (entered is not None and noticed < entered):
        return None
    return noticed


def resume_of(run: RunRecord, policy: ResumePolicy, now: datetime | None = None) -> Resume:
    """How the run stands with respect to automatic resumes, as of `now`."""
    state_type = (run.state_type or "").upper()
    count = run.run_count
    if state_type == "RUNNING" and 1 <= count <= policy.max_auto_retries and silent_since(run) is not None:
        return Resume(after_crash=False, resuming=True, resumes=count)
    if state_type == "CRASHED":
        if not 1 <= count <= policy.max_auto_retries:
            return Resume(after_crash=False, resuming=False, resumes=max(count - 1, 0))
        since = crashed_at(run)
        age = ((now or datetime.now(UTC)) - since).total_seconds() if since else 0.0
        if age > policy.deadline_seconds:
            return Resume(after_crash=False, resuming=False, resumes=count - 1, stale=True)
        return Resume(after_crash=True, resuming=True, resumes=count)
    if state_type in WAITING_AGAIN and count >= 1:
        return Resume(after_crash=False, resuming=True, resumes=count)
    return Resume(after_crash=False, resuming=False, resumes=max(count - 1, 0))


def stale_message(message: str | None, policy: ResumePolicy) -> str:
    """The output of a crashed run that nothing resumed within the deadline."""
    return (
        f"{message or 'crashed'}; not resumed automatically within {policy.deadline_seconds:.0f}s. "
        "Restart the instance (POST .../restart) to resume it from its checkpoints"
    )

"""`FakeRuns` plus the management operations of src/fanout/service/instance_management.py, in memory."""

from __future__ import annotations

from typing import Any

from fanout.service.instance_management import latest_per_instance
from fanout.service.runs import RunRecord
from tests.support.fake_runs import FakeRuns


class FakeManagedRuns(FakeRuns):
    """In-memory runs that also list, suspend, resume and report item rows."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[dict[str, Any]]] = {}

    async def every(self) -> list[RunRecord]:
        return latest_per_instance(self.runs.values())

    async def suspend(self, run: RunRecord, reason: str) -> str | None:
        self.calls.append("suspend")
        if run.state_type not in ("RUNNING", "SCHEDULED"):
            return "Cannot suspend flows that are not currently running."
        self.set_state(run.instance_id, "PAUSED")
        return None

    async def resume(self, run: RunRecord, reason: str) -> str | None:
        self.calls.append("resume")
        self.set_state(run.instance_id, "SCHEDULED")
        return None

    async def item_rows(self, run: RunRecord) -> list[dict[str, Any]] | None:
        return self.rows.get(run.instance_id)

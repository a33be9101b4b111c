"""`FakeRuns` plus the instance operations of deployments/instances.py, in memory."""

from __future__ import annotations

from typing import Any

from deployments.instances import latest_per_instance
from deployments.runs import RunRecord
from tests.support.fake_runs import FakeRuns


class FakeInstances(FakeRuns):
    """In-memory runs that also find by flow-run id, list, suspend, resume and report item rows."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, list[dict[str, Any]]] = {}

    async def find(self, instance_id: str) -> RunRecord | None:
        latest = await self.latest(instance_id)
        if latest is not None:
            return latest
        return next((run for run in self.runs.values() if str(run.flow_run_id) == instance_id), None)

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

    async def purge_instance(self, run: RunRecord) -> int:
        return await self.purge(run.instance_id)

    async def item_rows(self, run: RunRecord) -> list[dict[str, Any]] | None:
        return self.rows.get(run.instance_id)

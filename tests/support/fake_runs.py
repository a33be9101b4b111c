"""An in-memory stand-in for Prefect behind the webhook, for fast unit tests of the HTTP logic.

It mirrors the behaviour the webhook relies on and the end-to-end tests check
against a real server: an idempotency key returns the first run, whatever the
parameters; runs of an instance are found by its id, newest first.
"""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from prefect.exceptions import ObjectNotFound

from fanout.inputs.request import FanoutRequest
from fanout.service.orchestrators import Orchestrator
from fanout.service.runs import (
    LABEL_DEPLOYMENT,
    LABEL_FLOW,
    LABEL_INSTANCE,
    LABEL_REQUEST,
    LABEL_START,
    Purged,
    RunRecord,
)
from fanout.storage.run_output import RunOutput

_clock = itertools.count()


class FakeRuns:
    """Flow runs kept in a dict; tests move them between states with `set_state`."""

    def __init__(self) -> None:
        self.unreachable: str | None = None
        self.reads_again = 0
        self.runs: dict[UUID, RunRecord] = {}
        self.keys: dict[str, UUID] = {}
        self.outputs: dict[UUID, Any] = {}
        self.failure_reports: dict[UUID, list[dict[str, Any]]] = {}
        self.recorded: dict[UUID, tuple[int, int]] = {}
        """`(total, failed)` a run of another flow recorded in result storage (`set_state(..., recorded=...)`)."""
        self.artifacts: dict[UUID, list[str]] = {}
        self.untagged: set[UUID] = set()
        self.calls: list[str] = []
        self._lock = asyncio.Lock()
        self.default_deployment = "fan-out-fan-in/default"
        self.deployments: dict[str, dict[str, str]] = {  # as prefect.yaml declares them: name -> env job variable
            self.default_deployment: {},
            "fan-out-fan-in/http-enrich": {"FANOUT_SOURCES": "flows.http_enrich:urls"},
        }
        self.other_flows: list[Orchestrator] = []
        """Deployments of flows other than the seed's, which a Durable Functions start may name."""

    async def start(
        self, request: FanoutRequest, digest: str, idempotency_key: str, nonce: str, deployment: str | None = None
    ) -> RunRecord:
        self.calls.append("start")
        async with self._lock:
            await asyncio.sleep(0)
            if idempotency_key in self.keys:
                return self.runs[self.keys[idempotency_key]]
            assert request.instance_id is not None
            if (deployment or self.default_deployment) not in self.deployments:
                raise ObjectNotFound(http_exc=LookupError(deployment or self.default_deployment))
            created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=next(_clock))
            run = RunRecord(
                flow_run_id=uuid4(),
                instance_id=request.instance_id,
                name=f"fanout-{request.instance_id}",
                state_type="SCHEDULED",
                state_message=None,
                parameters={"request": request.model_dump(mode="json", exclude_defaults=True)},
                labels={
                    LABEL_INSTANCE: request.instance_id,
                    LABEL_REQUEST: digest,
                    LABEL_START: nonce,
                    LABEL_DEPLOYMENT: deployment or self.default_deployment,
                },
                created=created,
                updated=created,
            )
            self.runs[run.flow_run_id] = run
            self.keys[idempotency_key] = run.flow_run_id
            return run

    async def orchestrators(self) -> list[Orchestrator]:
        """The seed's deployments (no parameter schema needed: their input is the request) and `other_flows`."""
        seeds = [Orchestrator(*name.split("/", 1), ("request",)) for name in self.deployments]
        return [*seeds, *self.other_flows]

    async def start_flow(
        self,
        orchestrator: Orchestrator,
        parameters: dict[str, Any],
        instance_id: str,
        digest: str,
        idempotency_key: str,
        nonce: str,
    ) -> RunRecord:
        self.calls.append("start_flow")
        async with self._lock:
            if idempotency_key in self.keys:
                return self.runs[self.keys[idempotency_key]]
            created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=next(_clock))
            run = RunRecord(
                flow_run_id=uuid4(),
                instance_id=instance_id,
                name=f"fanout-{instance_id}",
                state_type="SCHEDULED",
                state_message=None,
                parameters=parameters,
                labels={
                    LABEL_INSTANCE: instance_id,
                    LABEL_REQUEST: digest,
                    LABEL_START: nonce,
                    LABEL_DEPLOYMENT: orchestrator.full_name,
                    LABEL_FLOW: orchestrator.flow,
                },
                created=created,
                updated=created,
            )
            self.runs[run.flow_run_id] = run
            self.keys[idempotency_key] = run.flow_run_id
            return run

    async def flow_result(self, run: RunRecord) -> Any:
        """The return value a test gave the run (`set_state(..., output=...)`)."""
        return self.outputs.get(run.flow_run_id)

    async def deployment_env(self, name: str) -> dict[str, str] | None:
        self.calls.append("deployment_env")
        return self.deployments.get(name)

    async def reachable(self) -> str | None:
        return self.unreachable

    def of_instance(self, instance_id: str) -> list[RunRecord]:
        found = [
            run for run in self.runs.values() if run.instance_id == instance_id and run.flow_run_id not in self.untagged
        ]
        return sorted(found, key=lambda run: run.created or datetime.min, reverse=True)

    async def latest(self, instance_id: str) -> RunRecord | None:
        found = self.of_instance(instance_id)
        return found[0] if found else None

    async def by_idempotency_key(self, idempotency_key: str) -> RunRecord | None:
        run_id = self.keys.get(idempotency_key)
        return self.runs.get(run_id) if run_id else None

    async def by_flow_run_id(self, flow_run_id: str) -> RunRecord | None:
        return next((run for run in self.runs.values() if str(run.flow_run_id) == flow_run_id), None)

    async def again(self, run: RunRecord) -> RunRecord | None:
        self.reads_again += 1
        return self.runs.get(run.flow_run_id)

    def add_run(self, instance_id: str | None = None, state_type: str = "COMPLETED") -> RunRecord:
        """A run started without the webhook (`prefect deployment run`, a trigger, `fanout serve`) that
        carries no instance tag: only its flow-run id finds it. Without an instance id it is its own."""
        flow_run_id = uuid4()
        created = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=next(_clock))
        run = RunRecord(
            flow_run_id=flow_run_id,
            instance_id=instance_id or str(flow_run_id),
            name="deployment-run",
            state_type=state_type,
            state_message=None,
            parameters={"request": {"instance_id": instance_id} if instance_id else {}},
            labels={},
            created=created,
            updated=created,
        )
        self.runs[flow_run_id] = run
        self.untagged.add(flow_run_id)
        return run

    async def output(self, run: RunRecord) -> RunOutput:
        """The output a test gave the run; its failures come from `failures`, as for an older record."""
        return RunOutput(self.outputs.get(run.flow_run_id))

    async def failures(self, run: RunRecord) -> list[dict[str, Any]] | None:
        return self.failure_reports.get(run.flow_run_id, [] if run.state_type == "COMPLETED" else None)

    async def recorded_items(self, run: RunRecord) -> tuple[int, int] | None:
        return self.recorded.get(run.flow_run_id)

    async def terminate(self, run: RunRecord) -> None:
        self.calls.append("terminate")
        self.move(run, "CANCELLING")

    async def restart(self, run: RunRecord) -> None:
        self.calls.append("restart")
        self.move(run, "SCHEDULED")

    async def purge(self, instance_id: str) -> Purged:
        self.calls.append("purge")
        purged = Purged()
        for run in self.of_instance(instance_id):
            purged += await self.delete_run(run)
        return purged

    async def delete_run(self, run: RunRecord) -> Purged:
        if self.runs.pop(run.flow_run_id, None) is None:
            return Purged()
        self.keys = {key: run_id for key, run_id in self.keys.items() if run_id in self.runs}
        return Purged(1, len(self.artifacts.pop(run.flow_run_id, [])))

    def move(self, run: RunRecord, state_type: str) -> RunRecord:
        """Put this very run (found by its flow-run id) in `state_type`."""
        moved = RunRecord(**{**self.runs[run.flow_run_id].__dict__, "state_type": state_type})
        self.runs[run.flow_run_id] = moved
        return moved

    def ui_url(self, run: RunRecord) -> str | None:
        return f"http://prefect.test/runs/flow-run/{run.flow_run_id}"

    def set_state(
        self,
        instance_id: str,
        state_type: str,
        message: str | None = None,
        output: Any = None,
        labels: dict[str, Any] | None = None,
        failures: list[dict[str, Any]] | None = None,
        run_count: int | None = None,
        at: datetime | None = None,
        recorded: tuple[int, int] | None = None,
    ) -> RunRecord:
        """Move the instance's latest run to `state_type` `at` a moment (now by default), and give it
        an output, labels, a report, a run count (attempts that reached Running) or another flow's recorded
        `(total, failed)`."""
        run = self.of_instance(instance_id)[0]
        updated = RunRecord(
            **{
                **run.__dict__,
                "state_type": state_type,
                "state_message": message,
                "labels": {**run.labels, **(labels or {})},
                "updated": at or datetime.now(UTC),
                "run_count": run.run_count if run_count is None else run_count,
            }
        )
        self.runs[run.flow_run_id] = updated
        if output is not None:
            self.outputs[run.flow_run_id] = output
        if failures is not None:
            self.failure_reports[run.flow_run_id] = failures
        if recorded is not None:
            self.recorded[run.flow_run_id] = recorded
        return updated

"""The local stack (src/fanout/localstack/stack.py: server, fanout's deployments, crash-resume automations,
webhook) with the moves fault tests and the fault benchmark make: kill a worker together with its
flow-run processes, restart the server, start and watch runs.

Everything runs on 127.0.0.1 on free ports and is stopped by `fault_stack()` whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from fanout.localstack.polling import wait_for
from fanout.localstack.processes import Child
from fanout.localstack.stack import DEPLOYMENT, LocalStack
from tests.support.paths import REPO_ROOT
from tests.support.processes import descendants
from tests.support.stacks import FINAL_STATES


def _sigkill(pid: int) -> None:
    for kill in (os.killpg, os.kill):
        with suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


@dataclass
class FaultStack:
    """A running `LocalStack` and the fault moves on it."""

    local: LocalStack
    deployment_id: UUID

    @classmethod
    def on(cls, local: LocalStack) -> FaultStack:
        """The fault moves on a started stack (its seed deployment's id read from its server)."""
        with local_client(local) as client:
            return cls(local=local, deployment_id=UUID(str(client.read_deployment_by_name(DEPLOYMENT).id)))

    @property
    def api_url(self) -> str:
        return self.local.api_url

    @property
    def results(self) -> Path:
        """The result storage the stack's webhook reads (outputs, results pages, purge): give it to workers."""
        return Path(self.local.env["FANOUT_RESULT_STORAGE"])

    def client(self) -> Any:
        """A sync Prefect client for this stack's server."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.api_url)

    def start_worker(self, env: Mapping[str, str] | None = None, worker_type: str | None = None) -> Child:
        """A worker (the stack's default type unless `worker_type` says) whose flow runs see `env`."""
        return self.local.start_worker(env=env, **({"worker_type": worker_type} if worker_type else {}))

    def kill_worker_and_runs(self, worker: Child) -> list[int]:
        """SIGKILL a worker and every flow-run process it started (they run in their own sessions), as one
        host death: the worker is frozen first, so it cannot report the death of a process killed before it."""
        os.kill(worker.process.pid, signal.SIGSTOP)
        victims = sorted(descendants(worker.process.pid))
        for pid in victims:
            _sigkill(pid)
        self.local.stop_worker(worker, kill=True)
        return victims

    def stop_workers(self) -> None:
        for worker in list(self.local.workers):
            self.local.stop_worker(worker)

    def restart_server(self) -> float:
        """Stop the Prefect server and start it again on the same port and database; seconds it was down."""
        assert self.local.server is not None
        began = time.monotonic()
        self.local.server.stop()
        self.local.server.start()
        return time.monotonic() - began

    def start_run(self, request: Mapping[str, Any]) -> UUID:
        """Create a flow run of the deployment with `request` as the flow's input."""
        with self.client() as client:
            run = client.create_flow_run_from_deployment(self.deployment_id, parameters={"request": dict(request)})
        return UUID(str(run.id))

    def read_run(self, run_id: UUID) -> Any:
        with self.client() as client:
            return client.read_flow_run(run_id)

    def wait_for(self, run_id: UUID, states: set[str], timeout: float, poll: float = 1.0) -> Any:
        """Poll the run until its state type is one of `states`, or raise with its history."""

        def arrived() -> Any:
            run = self.read_run(run_id)
            return run if run.state is not None and run.state.type.value in states else None

        try:
            return wait_for(arrived, timeout, f"run {run_id} reaching {states}", interval=poll)
        except TimeoutError as error:
            logs = "\n".join(worker.log_tail(15) for worker in self.local.workers)
            raise TimeoutError(f"{error}: {self.history(run_id)}\n{logs}") from None

    def history(self, run_id: UUID) -> list[str]:
        """The run's state names in order, with messages, for failure messages."""
        with self.client() as client:
            states = client.read_flow_run_states(run_id)
        return [f"{state.name}: {state.message or ''}"[:160] for state in states]

    def result(self, run_id: UUID) -> Any:
        """A Completed run's output, from fanout's output record in the stack's result storage (what the
        status API shows); else the run's state message."""
        from prefect.filesystems import LocalFileSystem

        from fanout.service.runs import record
        from fanout.storage.run_output import load_run_output

        run = self.read_run(run_id)
        if run.state is None or run.state.type.value != "COMPLETED":
            return run.state.message if run.state else None
        return load_run_output(LocalFileSystem(basepath=str(self.results)), record(run).instance_id).output

    def item_report(self, run_id: UUID) -> list[Any]:
        """The item report (failed and retried items) the run published, read over the API."""
        from prefect.client.orchestration import PrefectClient

        from fanout.engine.failures import read_item_report

        async def read() -> list[Any]:
            async with PrefectClient(self.api_url) as client:
                return await read_item_report(client, run_id) or []

        return asyncio.run(read())

    def cancel_unfinished(self) -> None:
        """Force every unfinished run of the deployment to Cancelled, so no later worker picks it up."""
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
        from prefect.states import Cancelled

        with self.client() as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id]))
            )
            for run in runs:
                if run.state is not None and run.state.type.value not in FINAL_STATES:
                    client.set_flow_run_state(run.id, Cancelled(message="fault test cleanup"), force=True)


def settings_env(crash_env: Mapping[str, str]) -> dict[str, str]:
    """The stack's environment: this one without FANOUT_* overrides, plus the crash-detection settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FANOUT_")}
    return {**env, "PYTHONPATH": str(REPO_ROOT), **crash_env}


@contextmanager
def fault_stack(folder: Path, crash_env: Mapping[str, str], database_url: str | None = None) -> Iterator[FaultStack]:
    """Server, fanout's deployments, automations (shaped by `crash_env`) and webhook, with one result storage
    (`FaultStack.results`) for the webhook and the workspaces' workers; all stopped on exit."""
    env = {
        **settings_env(crash_env),
        "FANOUT_RESULT_STORAGE": str(folder / "results"),
        "FANOUT_SOURCE_ROOTS": str(folder / "sources"),  # webhook and workers alike, as under `fanout up`
    }
    local = LocalStack(home=folder, database_url=database_url, env=env)
    try:
        local.start_server()
        local.deploy()
        local.start_webhook()
        yield FaultStack.on(local)
    finally:
        local.stop()


def local_client(local: LocalStack) -> Any:
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(local.api_url)

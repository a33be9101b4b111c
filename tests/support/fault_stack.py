"""A real local fanout stack for fault tests and the fault benchmark: Prefect server, process
work pool, the `fan-out-fan-in` deployment, the crash-resume automations and workers that can be killed.

Everything runs on 127.0.0.1 on free ports and is stopped by `fault_stack()` whatever happens.
The deployment is registered from this checkout (`flow.from_source`), so it needs no prefect.yaml.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from deployments.automations import apply_automations, worker_environment
from deployments.processes import Child, PrefectServer, spawn
from flows.settings import FanoutSettings, get_settings

REPO_ROOT = Path(__file__).resolve().parents[2]
POOL = "fanout-faults"
DEPLOYMENT = "faults"
FINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "CRASHED"}


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (read from /proc), deepest last."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(parent, []).append(int(entry.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


@dataclass
class FaultStack:
    """The running stack: one server, one deployment, any number of workers over time."""

    server: PrefectServer
    folder: Path
    env: dict[str, str]
    deployment_id: UUID | None = None
    workers: list[Child] = field(default_factory=list)

    def client(self) -> Any:
        """A sync Prefect client for this server."""
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.server.api_url)

    def start_worker(self, extra_env: Mapping[str, str] | None = None) -> Child:
        """A `prefect worker start` on the pool, with heartbeats, the stack's and `extra_env`'s variables."""
        name = f"worker-{len(self.workers) + 1}"
        argv = [str(Path(sys.executable).with_name("prefect")), "worker", "start", "--pool", POOL,
                "--name", name, "--type", "process"]
        worker = spawn(name, argv, {**self.env, **(extra_env or {})}, self.folder / "logs", cwd=REPO_ROOT)
        self.workers.append(worker)
        return worker

    def kill_worker_and_runs(self, worker: Child) -> list[int]:
        """SIGKILL a worker and every flow-run process it started (they run in their own sessions)."""
        victims = descendants(worker.process.pid)
        for pid in victims:
            for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    kill()
                except (ProcessLookupError, PermissionError):
                    pass
        worker.kill()
        return victims

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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.read_run(run_id)
            if run.state is not None and run.state.type.value in states:
                return run
            time.sleep(poll)
        raise TimeoutError(f"run {run_id} not in {states} after {timeout:.0f}s: {self.history(run_id)}\n"
                           + "\n".join(worker.log_tail(15) for worker in self.workers))

    def history(self, run_id: UUID) -> list[str]:
        """The run's state names in order, with messages, for failure messages."""
        with self.client() as client:
            states = client.read_flow_run_states(run_id)
        return [f"{state.name}: {state.message or ''}"[:160] for state in states]

    def result(self, run_id: UUID) -> Any:
        """The output a finished run returned."""
        from prefect.states import State

        state: State[Any] = self.read_run(run_id).state
        with _api(self.server.api_url):
            return state.result(raise_on_failure=False)

    def restart_server(self) -> float:
        """Stop the Prefect server and start it again on the same port and database; seconds it was down."""
        began = time.monotonic()
        self.server.stop()
        self.server.start()
        return time.monotonic() - began

    def cancel_unfinished(self) -> None:
        """Force every unfinished run of the deployment to Cancelled, so no later worker picks it up."""
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
        from prefect.states import Cancelled

        with self.client() as client:
            runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[self.deployment_id])))
            for run in runs:
                if run.state is not None and run.state.type.value not in FINAL_STATES:
                    client.set_flow_run_state(run.id, Cancelled(message="fault test cleanup"), force=True)

    def item_report(self, run_id: UUID) -> list[Any]:
        """The item report (failed and retried items) the run published, read over the API."""
        import asyncio

        from prefect.client.orchestration import PrefectClient

        from flows.failures import read_item_report

        async def read() -> list[Any]:
            async with PrefectClient(self.server.api_url) as client:
                return await read_item_report(client, run_id)
        return asyncio.run(read())

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop(grace=5)

    def stop(self) -> None:
        self.stop_workers()


@contextmanager
def _api(api_url: str) -> Iterator[None]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        yield


def settings_from(env: Mapping[str, str]) -> FanoutSettings:
    """The fanout settings the given FANOUT_* variables describe."""
    fields = {key[len("FANOUT_"):].lower(): value for key, value in env.items() if key.startswith("FANOUT_")}
    return get_settings(**{name: value for name, value in fields.items() if name in FanoutSettings.model_fields})


def register(stack: FaultStack) -> UUID:
    """Create the process pool and the deployment of this checkout's flow, then the automations."""
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    from flows.fanout import fan_out_fan_in

    with stack.client() as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=POOL, type="process"))
        except ObjectAlreadyExists:
            pass
    with _api(stack.server.api_url):
        deployment_id = fan_out_fan_in.from_source(
            source=str(REPO_ROOT), entrypoint="flows/fanout.py:fan_out_fan_in",
        ).deploy(name=DEPLOYMENT, work_pool_name=POOL, print_next_steps=False, ignore_warnings=True)
    stack.deployment_id = UUID(str(deployment_id))
    with stack.client() as client:
        apply_automations(client, [stack.deployment_id], settings_from(stack.env))
    return stack.deployment_id


@contextmanager
def fault_stack(folder: Path, fanout_env: Mapping[str, str], server_env: Mapping[str, str] | None = None) -> Iterator[FaultStack]:
    """A started server with the deployment and automations registered; every process stopped on exit.

    `fanout_env` (FANOUT_* variables) reaches the workers and so the flow runs; the crash-resume
    settings in it also shape the automations.
    """
    with ExitStack() as cleanup:
        server = PrefectServer(home=folder / "prefect-home", extra_env=dict(server_env or {}))
        cleanup.callback(server.stop)
        server.start()
        settings_env = {key: value for key, value in fanout_env.items() if key.startswith("FANOUT_")}
        env = {**server.client_env(), "PYTHONPATH": str(REPO_ROOT), "PREFECT_WORKER_QUERY_SECONDS": "2",
               "PREFECT_WORKER_PREFETCH_SECONDS": "5", **settings_env}
        env.update(worker_environment(settings_from(env)))
        stack = FaultStack(server=server, folder=folder, env=env)
        cleanup.callback(stack.stop)
        register(stack)
        yield stack

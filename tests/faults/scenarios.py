"""Fault scenarios as reusable functions: the fault tests, the fault benchmark and other
database backends run the same steps and read the same figures."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.filesystems import LocalFileSystem

from flows.checkpoints import CheckpointStore, item_digest
from tests.support.fault_stack import FaultStack

PROCESSOR = "tests.support.processors:scripted"


@dataclass
class Workspace:
    """Where one scenario's executions and checkpoints go, and the FANOUT_* env of its workers."""

    folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.executions.mkdir(parents=True, exist_ok=True)

    @property
    def executions(self) -> Path:
        return self.folder / "executions"

    @property
    def results(self) -> Path:
        return self.folder / "results"

    def env(self, **overrides: str) -> dict[str, str]:
        return {"FANOUT_PROCESSOR": PROCESSOR, "FANOUT_TEST_LOG_DIR": str(self.executions),
                "FANOUT_RESULT_STORAGE": str(self.results), "FANOUT_RETRY_DELAY_SECONDS": "0",
                **self.extra_env, **overrides}

    def keys_seen(self) -> dict[str, set[str]]:
        """The idempotency keys each item's executions saw (`<instance>/<item>`)."""
        seen: dict[str, set[str]] = {}
        for path in self.executions.iterdir():
            if path.name != "crashed":
                seen.setdefault(path.name.split(".")[0], set()).add(path.read_text().split(" ")[0])
        return seen

    def executed(self) -> Counter[str]:
        """How many times each item started."""
        return Counter(path.name.split(".")[0] for path in self.executions.iterdir()
                       if path.name != "crashed")

    def started_after(self, moment: float) -> list[Path]:
        """Execution files created after the wall-clock `moment`, oldest first."""
        files = [path for path in self.executions.iterdir()
                 if path.name != "crashed" and path.stat().st_mtime > moment]
        return sorted(files, key=lambda path: path.stat().st_mtime)

    def checkpointed(self, instance_id: str) -> set[str]:
        """Digests of the items of `instance_id` that have a checkpoint now (a record or a journal line)."""
        return CheckpointStore(LocalFileSystem(basepath=str(self.results)), instance_id, PROCESSOR).finished()

    def clear_executions(self) -> None:
        for path in self.executions.iterdir():
            path.unlink()


def start_worker(stack: FaultStack, workspace: Workspace, **overrides: str) -> Any:
    """A fresh worker whose flow runs see the workspace's FANOUT_* settings."""
    return stack.start_worker(workspace.env(**overrides))


def wait_until(condition: Any, timeout: float, what: str, poll: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")


@dataclass
class KillNineResult:
    """What a kill -9 of worker and flow run at about half way led to."""

    run_id: UUID
    state: str
    run_count: int
    output: Any
    count: int
    finished_before_kill: set[str]
    executions: Counter[str]
    keys_seen: dict[str, set[str]]
    kill_to_resume: float
    kill_to_complete: float
    history: list[str]

    @property
    def reexecuted(self) -> list[str]:
        """Items that ran more than once: must be only the ones in flight at the kill."""
        return sorted(item for item, times in self.executions.items() if times > 1)


def kill_nine_at_half(stack: FaultStack, workspace: Workspace, count: int = 200, sleep: float = 0.4,
                      parallel: int = 4, timeout: float = 420) -> KillNineResult:
    """Run `count` slow items; at half, SIGKILL the worker and its flow-run processes; start a
    fresh worker; wait (with no other help) until the run ends. Instance id = the flow run id."""
    items = [f"item-{index}" for index in range(1, count + 1)]
    worker = start_worker(stack, workspace, FANOUT_TEST_SLEEP=str(sleep), FANOUT_MAX_PARALLEL=str(parallel))
    run_id = stack.start_run({"count": count})
    instance = str(run_id)
    wait_until(lambda: len(workspace.checkpointed(instance)) >= count // 2, timeout / 2, "half the items")
    digests = workspace.checkpointed(instance)
    killed_at = time.time()
    stack.kill_worker_and_runs(worker)
    start_worker(stack, workspace, FANOUT_TEST_SLEEP=str(sleep), FANOUT_MAX_PARALLEL=str(parallel))
    wait_until(lambda: bool(workspace.started_after(killed_at)), timeout, "work resuming after the kill", poll=0.5)
    resumed_at = workspace.started_after(killed_at)[0].stat().st_mtime
    run = stack.wait_for(run_id, {"COMPLETED", "FAILED", "CANCELLED"}, timeout)
    ended_at = run.end_time.timestamp() if run.end_time else time.time()
    return KillNineResult(
        run_id=run_id, state=run.state.type.value, run_count=run.run_count, output=stack.result(run_id),
        count=count, finished_before_kill={item for item in items if item_digest(item) in digests},
        executions=workspace.executed(), keys_seen=workspace.keys_seen(), kill_to_resume=resumed_at - killed_at,
        kill_to_complete=ended_at - killed_at, history=stack.history(run_id),
    )

"""Fault scenarios as reusable functions: the fault tests, the fault benchmark and other
database backends run the same steps and read the same figures."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self
from uuid import UUID, uuid4

from prefect.filesystems import LocalFileSystem

from fanout.localstack.polling import wait_for
from fanout.localstack.stack import WARM_WORKER
from fanout.storage.checkpoints import CheckpointStore, item_digest
from fanout.worker.standby import standing_by
from tests.support.fault_stack import FaultStack, _sigkill
from tests.support.processes import alive, descendants

PROCESSOR = "tests.support.processors:scripted"


@dataclass
class Workspace:
    """Where one scenario's executions and checkpoints go, and the FANOUT_* env of its workers."""

    folder: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    storage: Path | None = None
    """Result storage: the stack's (`FaultStack.results`, which its webhook reads), else the workspace's own."""

    def __post_init__(self) -> None:
        self.executions.mkdir(parents=True, exist_ok=True)

    @property
    def executions(self) -> Path:
        return self.folder / "executions"

    @property
    def results(self) -> Path:
        return self.storage or self.folder / "results"

    def env(self, **overrides: str) -> dict[str, str]:
        return {
            "FANOUT_PROCESSOR": PROCESSOR,
            "FANOUT_TEST_LOG_DIR": str(self.executions),
            "FANOUT_RESULT_STORAGE": str(self.results),
            "FANOUT_RETRY_DELAY_SECONDS": "0",
            **self.extra_env,
            **overrides,
        }

    def keys_seen(self) -> dict[str, set[str]]:
        """The idempotency keys each item's executions saw (`<instance>/<item>`)."""
        seen: dict[str, set[str]] = {}
        for path in self.executions.iterdir():
            if path.name != "crashed":
                seen.setdefault(path.name.split(".")[0], set()).add(path.read_text().split(" ")[0])
        return seen

    def executed(self) -> Counter[str]:
        """How many times each item started."""
        return Counter(path.name.split(".")[0] for path in self.executions.iterdir() if path.name != "crashed")

    def started_after(self, moment: float) -> list[Path]:
        """Execution files created after the wall-clock `moment`, oldest first."""
        files = [path for path in self.executions.iterdir() if path.name != "crashed" and path.stat().st_mtime > moment]
        return sorted(files, key=lambda path: path.stat().st_mtime)

    def checkpointed(self, instance_id: str) -> set[str]:
        """Digests of the items of `instance_id` that have a checkpoint now (a record or a journal line)."""
        return CheckpointStore(LocalFileSystem(basepath=str(self.results)), instance_id, PROCESSOR).finished()

    def clear_executions(self) -> None:
        for path in self.executions.iterdir():
            path.unlink()


def start_worker(stack: FaultStack, workspace: Workspace, worker_type: str | None = None, **overrides: str) -> Any:
    """A fresh worker (the stack's default type unless `worker_type` says) whose flow runs see the
    workspace's FANOUT_* settings."""
    return stack.start_worker(workspace.env(**overrides), worker_type)


def wait_until(condition: Any, timeout: float, what: str, poll: float = 0.2) -> None:
    """Poll `condition` until it holds (fanout.localstack.polling), or raise TimeoutError naming `what`."""
    wait_for(condition, timeout, what, interval=poll)


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


def kill_nine_at_half(
    stack: FaultStack,
    workspace: Workspace,
    count: int = 200,
    sleep: float = 0.4,
    parallel: int = 4,
    timeout: float = 420,
) -> KillNineResult:
    """Run `count` slow items; at half, SIGKILL the worker and its flow-run processes; start a
    fresh worker; wait (with no other help) until the run ends. Instance id = the flow run id."""
    items = [f"item-{index}" for index in range(1, count + 1)]
    stack.cancel_unfinished()  # no run left by an earlier test is resumed by this scenario's workers
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
        run_id=run_id,
        state=run.state.type.value,
        run_count=run.run_count,
        output=stack.result(run_id),
        count=count,
        finished_before_kill={item for item in items if item_digest(item) in digests},
        executions=workspace.executed(),
        keys_seen=workspace.keys_seen(),
        kill_to_resume=resumed_at - killed_at,
        kill_to_complete=ended_at - killed_at,
        history=stack.history(run_id),
    )


STANDBY_CLIENT_POLL = 0.05
"""Seconds between a watching client's status reads while a standby may resume the run: its `resuming`
window, from the standby's mark to the resumed attempt's start, can be shorter than the usual 0.2 s."""


class StatusWatcher:
    """Polls an instance's status URL like a durable client, every `poll` seconds, from a thread,
    and keeps every change of answer: (seconds since start, HTTP code, runtimeStatus, customStatus)."""

    def __init__(self, stack: FaultStack, instance: str, poll: float = 0.2) -> None:
        import httpx

        local = stack.local
        self._client = httpx.Client(
            base_url=local.webhook_url, timeout=30, headers={"Authorization": f"Bearer {local.token}"}
        )
        self._url = f"/api/instances/{instance}"
        self._poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-watcher", daemon=True)
        self._began = time.monotonic()
        self.answers: list[tuple[float, int, str, dict[str, Any]]] = []
        self.max_failed = 0

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._client.close()

    def _loop(self) -> None:
        while True:
            try:
                response = self._client.get(self._url)
                body = response.json()
                custom = dict(body.get("customStatus") or {})
                self.max_failed = max(self.max_failed, int(custom.get("failed") or 0))
                self._record(response.status_code, str(body.get("runtimeStatus")), custom)
            except Exception as error:  # noqa: BLE001 - a refused poll is an answer too
                self._record(0, type(error).__name__, {})
            if self._stop.wait(self._poll):
                return

    def _record(self, code: int, status: str, custom: dict[str, Any]) -> None:
        if (
            not self.answers
            or self.answers[-1][1:3] != (code, status)
            or self.answers[-1][3].get("resuming") != custom.get("resuming")
        ):
            self.answers.append((time.monotonic() - self._began, code, status, custom))

    def finished_seen(self, timeout: float = 10) -> None:
        """Wait until the watcher has seen a 200."""
        wait_until(lambda: any(code == 200 for _, code, _, _ in self.answers), timeout, "a 200 on the status URL")

    @property
    def sequence(self) -> list[str]:
        """The answers in order, e.g. `202 Running`, `202 Running (resuming 1)`, `200 Completed`."""
        return [
            f"{code} {status}" + (f" (resuming {custom.get('resumes')})" if custom.get("resuming") else "")
            for _, code, status, custom in self.answers
        ]

    def first_resuming_after(self, moment: float) -> float | None:
        """Seconds from `moment` (a `time.monotonic()` reading) to the first answer saying `resuming`."""
        return next(
            (
                self._began + at - moment
                for at, _, _, custom in self.answers
                if custom.get("resuming") and self._began + at >= moment
            ),
            None,
        )

    @property
    def first_final(self) -> str | None:
        """The first 200 a client saw (where a client would stop polling)."""
        return next((f"{code} {status}" for _, code, status, _ in self.answers if code == 200), None)

    @property
    def first_total(self) -> Any:
        """customStatus.total in the first answer."""
        return self.answers[0][3].get("total") if self.answers else None


@dataclass
class CrashResult:
    """What a SIGKILL at about half way led to, as the client and the run saw it."""

    kind: str  # "flow": only the flow-run process, its worker lives on; "host": worker and flow process
    run_id: UUID
    state: str
    run_count: int
    output: Any
    count: int
    finished_before_kill: set[str]
    executions: Counter[str]
    kill_to_resume: float
    kill_to_complete: float
    history: list[str]
    statuses: list[str]
    first_final: str | None
    first_total: Any
    max_failed: int
    kill_to_rescheduled: float | None  # the first AwaitingRetry after the kill: what fanout's automations take
    start_cost: float | None  # the first attempt's Submitting -> Running: what the worker takes to start a flow
    kill_to_resuming: float | None = None  # the client's first `resuming` answer after the kill

    @property
    def reexecuted(self) -> list[str]:
        """Items that ran more than once: must be only the ones in flight at the kill."""
        return sorted(item for item, times in self.executions.items() if times > 1)


def start_through_webhook(stack: FaultStack, count: int) -> tuple[str, UUID]:
    """POST /api/start-fanout {"count": count}: the instance id and its flow run id."""
    import httpx

    local = stack.local
    # A named instance is created on Prefect at once (an unnamed one waits in the webhook's start
    # queue, with no run id yet), so the run id is in the answer's uiUrl.
    response = httpx.post(
        f"{local.webhook_url}/api/start-fanout",
        json={"count": count, "instance_id": f"crash-{uuid4().hex[:12]}"},
        timeout=30,
        headers={"Authorization": f"Bearer {local.token}"},
    )
    response.raise_for_status()
    body = response.json()
    return str(body["id"]), UUID(str(body["uiUrl"]).rstrip("/").rsplit("/", 1)[1])


def states_of(stack: FaultStack, run_id: UUID) -> list[tuple[str, float, str]]:
    """The run's states in order: (name, wall-clock time, message)."""
    with stack.client() as client:
        states = client.read_flow_run_states(run_id)
    return [(state.name, state.timestamp.timestamp(), state.message or "") for state in states]


def timeline(states: list[tuple[str, float, str]], since: float) -> list[str]:
    """The states with their time relative to `since` (a wall-clock moment) and a short message."""
    return [f"{name}@{at - since:+.1f}s {message[:70]}".rstrip() for name, at, message in states]


def first_after(states: list[tuple[str, float, str]], name: str, since: float) -> float | None:
    """Seconds from `since` to the first state called `name` after it."""
    return next((at - since for state, at, _ in states if state == name and at > since), None)


def first_start_cost(states: list[tuple[str, float, str]]) -> float | None:
    """Seconds from the first attempt's Submitting (or Pending) to its Running: what starting a flow process costs."""
    began = next((at for name, at, _ in states if name in ("Submitting", "Pending")), None)
    running = next((at for name, at, _ in states if name == "Running"), None)
    return running - began if began is not None and running is not None else None


def wait_standing_by(workers: list[Any], timeout: float = 120) -> None:
    """Wait until every warm worker's standby listens to alive events (a worker answers its health check
    before its standby subscribes): a standby that started after a crash did not see it happen."""
    wait_until(
        lambda: all(standing_by(worker.process.pid) in worker.log_tail(400) for worker in workers),
        timeout,
        "standbys listening",
    )


def _descendants(worker: Any) -> set[int]:
    return descendants(worker.process.pid)


def flow_process(stack: FaultStack, run_id: UUID) -> int:
    """The pid of the run's flow-run process, as its worker recorded it (`host:pid` or `pid`)."""
    return int(str(stack.read_run(run_id).infrastructure_pid).rsplit(":", 1)[-1])


def kill_flow_processes(stack: FaultStack, run_id: UUID) -> list[int]:
    """SIGKILL the run's flow-run process (its `infrastructure_pid`) and what it started, leaving the
    worker alive, and with it whatever else the worker runs (the warm worker's forkserver)."""
    pid = flow_process(stack, run_id)
    victims = [pid, *sorted(descendants(pid))]
    for victim in victims:
        _sigkill(victim)
    return victims


def crash_at_half(
    stack: FaultStack,
    workspace: Workspace,
    kind: str,
    count: int = 60,
    sleep: float = 0.4,
    parallel: int = 4,
    timeout: float = 300,
    worker_type: str = "process",
    standbys: int = 1,
    worker_env: Mapping[str, str] | None = None,
) -> CrashResult:
    """Start `count` slow items through the webhook, watch the status URL like a client, SIGKILL at half
    (kind "flow": the flow-run process only; "host": the worker running it and its flow process, while
    `standbys` other workers stand by, as on other hosts; `worker_env`: more settings for the workers),
    and wait, with no other help, until the run ends and the client has seen its 200. Prefect's `process`
    worker by default: every process below it is a flow run, and the automations are what resume it."""
    if kind not in ("flow", "host"):
        raise ValueError(f"unknown crash kind {kind!r}")
    items = [f"item-{index}" for index in range(1, count + 1)]
    stack.cancel_unfinished()  # no run left by an earlier test is resumed by this scenario's workers
    env = {"FANOUT_TEST_SLEEP": str(sleep), "FANOUT_MAX_PARALLEL": str(parallel), **(worker_env or {})}
    workers = [
        start_worker(stack, workspace, worker_type, **env) for _ in range(1 + (standbys if kind == "host" else 0))
    ]
    standing_by = worker_type == WARM_WORKER and env.get("FANOUT_STANDBY", "true").lower() not in ("false", "0")
    if standing_by:
        wait_standing_by(workers)
    instance, run_id = start_through_webhook(stack, count)
    with StatusWatcher(stack, instance, poll=STANDBY_CLIENT_POLL if standing_by else 0.2) as watcher:
        wait_until(lambda: len(workspace.checkpointed(instance)) >= count // 2, timeout / 2, "half the items")
        digests = workspace.checkpointed(instance)
        flow_pid = flow_process(stack, run_id)
        worker = next((w for w in workers if flow_pid in _descendants(w)), workers[0])
        killed_at, killed_monotonic = time.time(), time.monotonic()
        victims = stack.kill_worker_and_runs(worker) if kind == "host" else kill_flow_processes(stack, run_id)
        wait_until(lambda: not any(alive(pid) for pid in victims), 10, "the killed processes gone")
        dead_at = time.time()  # an item the dying attempt started may carry a time just after `killed_at`
        wait_until(lambda: bool(workspace.started_after(dead_at)), timeout, "work resuming after the kill", poll=0.2)
        resumed_at = workspace.started_after(dead_at)[0].stat().st_mtime
        run = stack.wait_for(run_id, {"COMPLETED", "FAILED", "CANCELLED"}, timeout, poll=0.5)
        watcher.finished_seen()
    ended_at = run.end_time.timestamp() if run.end_time else time.time()
    states = states_of(stack, run_id)
    return CrashResult(
        kind=kind,
        run_id=run_id,
        state=run.state.type.value,
        run_count=run.run_count,
        output=stack.result(run_id),
        count=count,
        finished_before_kill={item for item in items if item_digest(item) in digests},
        executions=workspace.executed(),
        kill_to_resume=resumed_at - killed_at,
        kill_to_complete=ended_at - killed_at,
        history=timeline(states, killed_at),
        statuses=watcher.sequence,
        first_final=watcher.first_final,
        first_total=watcher.first_total,
        max_failed=watcher.max_failed,
        kill_to_rescheduled=first_after(states, "AwaitingRetry", killed_at),
        start_cost=first_start_cost(states),
        kill_to_resuming=watcher.first_resuming_after(killed_monotonic),
    )

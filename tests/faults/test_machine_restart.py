"""The machine restarts half-way through a run: every process of `fanout up` is SIGKILLed at once, and
`fanout up` is started again in the same folder with the same database. The run resumes by itself."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prefect.filesystems import LocalFileSystem

from fanout.localstack.polling import wait_for
from fanout.storage.checkpoints import CheckpointStore, item_digest
from tests.conftest import REPO_ROOT
from tests.support.fault_scenarios import PROCESSOR
from tests.support.up_restart import StatusLog, up_stack

pytestmark = pytest.mark.faults

COUNT = 80


@dataclass
class RestartResult:
    """What the client and the journals saw across the restart."""

    instance: str
    finished_before_kill: set[str]
    executions: Counter[str]
    back_to_completed: float
    answers: list[tuple[float, int, str]]
    final: dict[str, object]
    ports: tuple[str, str]
    log: str
    worker_log: str
    history: list[str]

    @property
    def reexecuted(self) -> set[str]:
        return {item for item, times in self.executions.items() if times > 1}


def executed(folder: Path) -> Counter[str]:
    return Counter(path.name.split(".")[0] for path in folder.iterdir() if path.name != "crashed")


@pytest.fixture(scope="module")
def restart(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RestartResult]:
    """80 items of 0.3 s, 4 at a time, started through the webhook; at half, SIGKILL of everything, and the
    server's automation windows lost; `fanout up` again; a client polls the status URL throughout."""
    folder = tmp_path_factory.mktemp("machine-restart")
    executions, results = folder / "executions", folder / "results"
    executions.mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FANOUT_", "PREFECT_"))}
    env |= {
        "PYTHONPATH": str(REPO_ROOT),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "FANOUT_PROCESSOR": PROCESSOR,
        "FANOUT_TEST_LOG_DIR": str(executions),
        "FANOUT_TEST_SLEEP": "0.3",
        "FANOUT_MAX_PARALLEL": "4",
        "FANOUT_RESULT_STORAGE": str(results),
    }
    instance = f"restart-{uuid.uuid4().hex[:10]}"
    checkpoints = CheckpointStore(LocalFileSystem(basepath=str(results)), instance, PROCESSOR)
    with up_stack(folder / "project", env) as stack:
        first = stack.start("--prefect-port", "0", "--webhook-port", "0")
        webhook, token = stack.webhook(first), stack.token()
        started = httpx.post(
            f"{webhook}/api/start-fanout",
            json={"count": COUNT, "instance_id": instance},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert started.status_code == 202, started.text
        status = StatusLog(token)
        status.watch(webhook, f"/api/instances/{instance}")
        try:
            wait_for(lambda: len(checkpoints.finished()) >= COUNT // 2, 240, "half the items", interval=0.2)
            digests = checkpoints.finished()
            stack.kill_everything(first)
            stack.forget_automation_windows()
            second = stack.start()  # no port options: the ones recorded last time
            back_at = time.time()
            status.watch(stack.webhook(second), f"/api/instances/{instance}")
            try:
                wait_for(status.first_200, 240, "a 200 on the status URL", interval=0.5)
            except TimeoutError as error:
                raise AssertionError(f"{error}: {status.answers[-3:]}\n{stack.run_history(second, instance)}") from None
        finally:
            status.stop()
        first_200 = status.first_200()
        assert first_200 is not None
        yield RestartResult(
            instance=instance,
            finished_before_kill={f"item-{i}" for i in range(1, COUNT + 1) if item_digest(f"item-{i}") in digests},
            executions=executed(executions),
            back_to_completed=first_200[0] - back_at,
            answers=[(at, code, state) for at, code, state, _ in status.answers],
            final=first_200[2],
            ports=(stack.webhook(first), stack.webhook(second)),
            log=second.log_tail(60),
            worker_log=(stack.home / "logs" / "worker-1.log").read_text(errors="replace"),
            history=stack.run_history(second, instance),
        )


def test_the_run_completes_within_a_minute_of_the_stack_coming_back(restart: RestartResult) -> None:
    """After the restart the same instance Completes, with every item's result, within 60 s."""
    assert restart.final["runtimeStatus"] == "Completed", restart.log
    assert restart.final["output"] == [f"Processed item-{i}" for i in range(1, COUNT + 1)]
    assert restart.back_to_completed < 60, (restart.back_to_completed, restart.log)


def test_only_the_items_in_flight_at_the_kill_ran_again(restart: RestartResult) -> None:
    """Items checkpointed before the kill ran once; at most the 4 in flight ran twice."""
    assert COUNT // 2 <= len(restart.finished_before_kill) < COUNT
    assert set(restart.executions) == {f"item-{i}" for i in range(1, COUNT + 1)}
    assert not restart.reexecuted & restart.finished_before_kill
    assert len(restart.reexecuted) <= 4, restart.reexecuted


def test_the_status_never_answers_200_before_the_end(restart: RestartResult) -> None:
    """Every answer before the first 200 was a 202 (or no answer while the stack was down), and the
    first 200 is the Completed one."""
    codes = [code for _, code, _ in restart.answers]
    first_200 = codes.index(200)
    assert set(codes[:first_200]) <= {202, 0}, restart.answers[:first_200]
    assert restart.answers[first_200][2] == "Completed"


def test_the_stack_comes_back_on_the_same_ports(restart: RestartResult) -> None:
    """`fanout up` again, without port options, serves on the ports of its last run."""
    assert restart.ports[0] == restart.ports[1]


def test_the_run_was_resumed_by_a_reconcile_pass_after_the_restart(restart: RestartResult) -> None:
    """The run left Running was put back to AwaitingRetry by a pass that found no sign of life behind it."""
    resumed = [state for state in restart.history if state.startswith("AwaitingRetry")]
    assert len(resumed) == 1 and "no living process after a restart" in resumed[0], restart.history

"""The `fanout-warm` worker on a real server: cancel, crash and resume, runs side by side, a run that raises.

Each run carries what its test's processor needs (its execution log, how long an item sleeps) in its job
`env`, so the tests share the session's pooled worker; only the test that stops a worker starts its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from fanout.localstack.processes import Child
from fanout.localstack.stack import LocalStack
from tests.support.processes import alive, descendants
from tests.support.stacks import FINAL_STATES, finished_output, wait_for

pytestmark = pytest.mark.e2e


def start_run(api: httpx.Client, request: dict[str, Any], env: Mapping[str, str] | None = None) -> str:
    """Create a flow run of fan-out-fan-in/default with `request` (and `env` as its job variables); its id."""
    deployment = api.get("/deployments/name/fan-out-fan-in/default").json()
    body: dict[str, Any] = {"parameters": {"request": request}}
    if env:
        body["job_variables"] = {"env": dict(env)}
    for _ in range(20):  # SQLite's 503 (a write that lost a race) says when to try again
        created = api.post(f"/deployments/{deployment['id']}/create_flow_run", json=body)
        if created.status_code != 503:
            break
        time.sleep(float(created.headers.get("retry-after", "1")))
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def read_run(api: httpx.Client, flow_run_id: str) -> dict[str, Any]:
    return dict(api.get(f"/flow_runs/{flow_run_id}").json())


def running_pid(api: httpx.Client, flow_run_id: str) -> int:
    """Wait until the run is Running; the pid of its flow-run process."""

    def running() -> int | None:
        run = read_run(api, flow_run_id)
        return (
            int(run["infrastructure_pid"]) if run["state"]["type"] == "RUNNING" and run["infrastructure_pid"] else None
        )

    return int(wait_for(running, timeout=120, interval=0.2, what=f"{flow_run_id} running"))


def final_state(api: httpx.Client, flow_run_id: str) -> str:
    """Wait for the run to end; its final state type."""

    def ended() -> str | None:
        state = str(read_run(api, flow_run_id)["state"]["type"])
        return state if state in FINAL_STATES else None

    return str(wait_for(ended, timeout=180, interval=0.2, what=f"{flow_run_id} to end"))


def state_names(api: httpx.Client, flow_run_id: str) -> list[str]:
    """Every state the run went through, oldest first."""
    states = api.get("/flow_run_states/", params={"flow_run_id": flow_run_id}).json()
    return [state["name"] for state in sorted(states, key=lambda state: state["timestamp"])]


@pytest.fixture
def run_log(tmp_path: Path) -> Path:
    """A folder where the scripted processor of this test's runs records each execution."""
    folder = tmp_path / "executions"
    folder.mkdir()
    return folder


def scripted(log: Path, **extra: str) -> dict[str, str]:
    """A run's job `env`: the scripted processor (tests/support/processors.py), recording in `log`, with `extra`."""
    return {"FANOUT_PROCESSOR": "tests.support.processors:scripted", "FANOUT_TEST_LOG_DIR": str(log), **extra}


def test_cancelling_a_running_run_kills_its_process_and_ends_cancelled(
    stack: LocalStack, worker: Child, prefect_api: httpx.Client, run_log: Path
) -> None:
    """A Running run set to Cancelling has its process killed and ends Cancelled."""
    flow_run_id = start_run(prefect_api, {"items": ["c1", "c2"]}, scripted(run_log, FANOUT_TEST_SLEEP="60"))
    pid = running_pid(prefect_api, flow_run_id)

    cancelling = prefect_api.post(f"/flow_runs/{flow_run_id}/set_state", json={"state": {"type": "CANCELLING"}})

    assert cancelling.status_code in (200, 201), cancelling.text
    wait_for(
        lambda: read_run(prefect_api, flow_run_id)["state"]["type"] == "CANCELLED",
        timeout=60,
        interval=0.2,
        what="the run to end Cancelled",
    )
    wait_for(lambda: not alive(pid), timeout=30, interval=0.2, what=f"process {pid} to end")


def test_a_killed_run_resumes_and_completes_while_the_other_run_is_unaffected(
    stack: LocalStack, worker: Child, prefect_api: httpx.Client, run_log: Path
) -> None:
    """A SIGKILLed run goes back to AwaitingRetry (never a final state) and Completes; the other is unaffected."""
    slow = scripted(run_log, FANOUT_TEST_SLEEP="4")  # a run is still running when the test acts on it
    victim = start_run(prefect_api, {"items": ["v1", "v2"]}, slow)
    bystander = start_run(prefect_api, {"items": ["b1", "b2"]}, slow)
    victim_pid = running_pid(prefect_api, victim)
    wait_for(lambda: any(run_log.glob("v1*")), timeout=60, interval=0.1, what="the victim's first item to start")

    os.kill(victim_pid, signal.SIGKILL)

    assert finished_output(stack, victim) == ("COMPLETED", ["Processed v1", "Processed v2"])
    assert finished_output(stack, bystander) == ("COMPLETED", ["Processed b1", "Processed b2"])
    victim_states = state_names(prefect_api, victim)
    assert "AwaitingRetry" in victim_states
    assert not {"Crashed", "Failed"} & set(victim_states)
    assert read_run(prefect_api, victim)["run_count"] == 2
    assert "Crashed" not in state_names(prefect_api, bystander)


def rendezvous(item: str) -> str:
    """A processor whose item records its process id, then waits (up to 120 s) until every item named in
    FANOUT_TEST_PARTIES has started: no item ends unless all of them ran at the same time."""
    folder = Path(os.environ["FANOUT_TEST_LOG_DIR"])
    (folder / f"{item}.writing").write_text(str(os.getpid()))
    (folder / f"{item}.writing").rename(folder / item)
    parties = os.environ["FANOUT_TEST_PARTIES"].split(",")
    deadline = time.monotonic() + 120
    while not all((folder / party).exists() for party in parties):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{item}: the other runs never started while it ran")
        time.sleep(0.05)
    return f"Processed {item}"


def reported_pid(api: httpx.Client, flow_run_id: str) -> int:
    """The flow-run process id the worker reported for the run (it may land just after the run ends)."""
    pid = wait_for(
        lambda: read_run(api, flow_run_id)["infrastructure_pid"], timeout=30, interval=0.2, what="a reported pid"
    )
    return int(pid)


def test_two_runs_execute_at_the_same_time_in_their_own_processes(
    stack: LocalStack, worker: Child, prefect_api: httpx.Client, run_log: Path
) -> None:
    """Two runs started together run side by side, each in a process of its own (each item waits for the other)."""
    env = scripted(run_log, FANOUT_PROCESSOR=f"{__name__}:rendezvous", FANOUT_TEST_PARTIES="p1,q1")
    first, second = start_run(prefect_api, {"items": ["p1"]}, env), start_run(prefect_api, {"items": ["q1"]}, env)

    assert finished_output(stack, first) == ("COMPLETED", ["Processed p1"])
    assert finished_output(stack, second) == ("COMPLETED", ["Processed q1"])
    item_pids = [int((run_log / item).read_text()) for item in ("p1", "q1")]
    assert item_pids == [reported_pid(prefect_api, first), reported_pid(prefect_api, second)]
    assert len(set(item_pids)) == 2


def test_a_run_that_raises_fails_and_the_worker_keeps_serving(
    stack: LocalStack, worker: Child, prefect_api: httpx.Client, run_log: Path
) -> None:
    """A run whose item raises ends Failed (not Crashed, not retried), and the next run still Completes."""
    env = scripted(run_log, FANOUT_TEST_FAIL="bad")
    failing = start_run(prefect_api, {"items": ["bad"]}, env)

    assert final_state(prefect_api, failing) == "FAILED"
    assert "Crashed" not in state_names(prefect_api, failing)
    assert finished_output(stack, start_run(prefect_api, {"items": ["good"]}, env)) == ("COMPLETED", ["Processed good"])
    assert worker.process.poll() is None


def test_a_run_whose_job_variables_change_a_prefect_setting_completes(
    stack: LocalStack, worker: Child, prefect_api: httpx.Client
) -> None:
    """A run whose job `env` sets a Prefect setting runs under it (not the spare's preparation) and Completes."""
    deployment = prefect_api.get("/deployments/name/fan-out-fan-in/default").json()
    created = prefect_api.post(
        f"/deployments/{deployment['id']}/create_flow_run",
        json={
            "parameters": {"request": {"items": ["e1"]}},
            "job_variables": {"env": {"PREFECT_LOGGING_LEVEL": "DEBUG"}},
        },
    )
    assert created.status_code == 201, created.text

    assert finished_output(stack, created.json()["id"]) == ("COMPLETED", ["Processed e1"])


def test_a_stopped_worker_leaves_no_process_behind(
    stack: LocalStack, start_worker: Callable[..., Child], prefect_api: httpx.Client
) -> None:
    """SIGTERM to the worker process alone (not its group): its forkserver and its spare exit with it."""
    worker = start_worker()
    flow_run_id = start_run(prefect_api, {"items": ["s1"]})
    assert finished_output(stack, flow_run_id)[0] == "COMPLETED"
    run_process = int(str(read_run(prefect_api, flow_run_id)["infrastructure_pid"]).rsplit(":", 1)[-1])

    def with_spare() -> set[int] | None:
        """The idle worker's processes: its run's process gone, the spare forked for the next run there (beside
        the forkserver and multiprocessing's resource tracker)."""
        found = descendants(worker.process.pid)
        return found if len(found) >= 3 and run_process not in found else None

    processes = wait_for(with_spare, timeout=30, interval=0.2, what="the next run's spare")

    worker.process.send_signal(signal.SIGTERM)
    try:
        worker.process.wait(60)
    except subprocess.TimeoutExpired:
        left = {pid: alive(pid) for pid in descendants(worker.process.pid)}
        pytest.fail(f"the worker is still running 60 s after SIGTERM; its processes {left}:\n{worker.log_tail(60)}")

    wait_for(lambda: not any(alive(pid) for pid in processes), timeout=30, interval=0.2, what="the worker's processes")

"""The warm worker's spare flow-run process, as real processes: it never outlives its worker and leaves
Ctrl-C to it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fanout.localstack.polling import wait_for
from fanout.worker.warm_processes import WarmProcesses
from tests.conftest import REPO_ROOT

NOWHERE = {"PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_CLIENT_MAX_RETRIES": "0"}
"""A Prefect API where nothing listens: a spare's preparation fails at once, as it may, and it still waits."""

WORKER = """
import sys
from fanout.worker.warm_processes import WarmProcesses
warm = WarmProcesses(["fanout.worker.warm_child"])
warm.warm_up()
spare = warm.spare
print("spare", spare.pid, flush=True)
sys.stdin.readline()
warm.stop()
print("exit", spare.exitcode, flush=True)
"""
"""A worker's processes in miniature: prints its spare's pid, stops when a line arrives, prints the spare's exit code
(each line tagged: the spare and the forkserver write to the same stdout)."""


def start_worker(env: dict[str, str]) -> subprocess.Popen[str]:
    """WORKER in a process of its own, with Ctrl-C's default action (a shell may start tests with it ignored)."""
    return subprocess.Popen(
        [sys.executable, "-c", WORKER],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def read_tagged(worker: subprocess.Popen[str], tag: str) -> str:
    """The value of the worker's next stdout line tagged `tag`, skipping whatever else its processes printed."""
    assert worker.stdout is not None
    while line := worker.stdout.readline():
        if line.startswith(f"{tag} "):
            return line.split(" ", 1)[1].strip()
    raise AssertionError(f"the worker ended without printing {tag!r}")


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in NOWHERE.items():
        monkeypatch.setenv(name, value)
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}


def test_a_spare_exits_when_its_worker_is_killed(worker_env: dict[str, str]) -> None:
    """SIGKILL of the worker: its spare reads end-of-file on its pipe and exits; nothing is left behind."""
    worker = start_worker(worker_env)
    try:
        assert worker.stdout is not None
        spare = int(read_tagged(worker, "spare"))
        assert not gone(spare)
        worker.send_signal(signal.SIGKILL)
        wait_for(lambda: gone(spare), 20, "the spare to exit", interval=0.05)
    finally:
        worker.kill()
        worker.wait()


def test_an_unused_spare_exits_cleanly_when_its_worker_stops(worker_env: dict[str, str]) -> None:
    """A stopped worker retires its spare: the spare exits by itself, with code 0, and no new one is started."""
    processes = WarmProcesses(["fanout.worker.warm_child"])
    processes.warm_up()
    spare = processes.spare
    assert spare is not None and spare.is_alive()

    processes.stop()
    processes.replenish()

    assert spare.exitcode == 0
    assert processes.spare is None


def ignores_sigint(pid: int) -> bool:
    """The spare itself has SIGINT ignored (its signal masks in /proc).

    A child fresh from the forkserver still holds the forkserver's own dispositions for a moment (SIGINT
    ignored, SIGCHLD caught) until `multiprocessing` restores the defaults and the spare's code runs, so
    an ignored SIGINT counts only once SIGCHLD is no longer caught.
    """
    masks = {
        name: int(value, 16)
        for name, _, value in (line.partition(":\t") for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        if name in ("SigIgn", "SigCgt")
    }
    return bool(masks["SigIgn"] & 1 << (signal.SIGINT - 1)) and not masks["SigCgt"] & 1 << (signal.SIGCHLD - 1)


def test_an_idle_spare_leaves_ctrl_c_to_its_worker(worker_env: dict[str, str]) -> None:
    """SIGINT (Ctrl-C in the worker's terminal) does not end an idle spare; the worker's stop ends it cleanly."""
    worker = start_worker(worker_env)
    try:
        assert worker.stdin is not None
        spare = int(read_tagged(worker, "spare"))
        wait_for(lambda: ignores_sigint(spare), 20, "the spare to ignore SIGINT", interval=0.05)

        os.kill(spare, signal.SIGINT)
        worker.stdin.write("stop\n")
        worker.stdin.flush()

        exit_code = read_tagged(worker, "exit")
        assert exit_code == "0", worker.communicate(timeout=30)[1][-3000:]
    finally:
        worker.kill()
        worker.wait()

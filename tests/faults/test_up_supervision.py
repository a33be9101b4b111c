"""`fanout up` supervises its children: one that is killed comes back on the same port, and the stack keeps
serving."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fanout.localstack.polling import wait_for
from fanout.localstack.processes import Child
from tests.support.fault_stack import descendants
from tests.support.up_restart import UpStack, up_stack, wait_for_answer

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpStack, Child]]:
    """One `fanout up` on free ports for this module."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FANOUT_", "PREFECT_"))}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    with up_stack(tmp_path_factory.mktemp("supervised") / "project", env) as stack:
        yield stack, stack.start("--prefect-port", "0", "--webhook-port", "0")


def child_running(up: Child, marker: str) -> int:
    """The pid of the stack's child whose command line holds `marker`."""
    for pid in descendants(up.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in command:
            return pid
    raise AssertionError(f"no child running {marker!r}")


def kill_and_wait_for_restart(stack: UpStack, up: Child, marker: str, name: str) -> None:
    victim = child_running(up, marker)
    restarts = up.log_path.read_text().count(f"{name} restarted")
    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: up.log_path.read_text().count(f"{name} restarted") > restarts or up.process.poll() is not None,
        180,
        f"{name} restarted",
        interval=0.5,
    )
    assert up.process.poll() is None, up.log_tail()


def test_a_killed_webhook_is_restarted_on_its_port_and_serves(supervised: tuple[UpStack, Child]) -> None:
    """SIGKILL of the webhook: `fanout up` says so, starts it again on the same port, /health answers."""
    stack, up = supervised
    webhook = stack.webhook(up)
    kill_and_wait_for_restart(stack, up, "fanout.api.webhook", "webhook")
    assert "webhook exited with -9; restarting it in 1s (attempt 1)" in up.log_path.read_text()
    assert httpx.get(f"{webhook}/health", timeout=10).status_code == 200


def test_a_killed_prefect_server_is_restarted_and_a_run_completes(supervised: tuple[UpStack, Child]) -> None:
    """SIGKILL of the Prefect server: it comes back on its port, and a start through the webhook completes."""
    stack, up = supervised
    webhook = stack.webhook(up)
    kill_and_wait_for_restart(stack, up, "fanout.localstack.prefect_server", "prefect-server")
    headers = {"Authorization": f"Bearer {stack.token()}"}
    started = wait_for_answer(
        lambda: httpx.post(f"{webhook}/api/start-fanout", json={"count": 3}, headers=headers, timeout=30),
        202,
        60,
        "a start accepted",
    )
    status_url = started.headers["location"]
    finished = wait_for_answer(
        lambda: httpx.get(status_url, headers=headers, timeout=30), 200, 180, "the run to finish"
    )
    assert finished.json()["runtimeStatus"] == "Completed"
    assert finished.json()["output"] == ["Processed item-1", "Processed item-2", "Processed item-3"]

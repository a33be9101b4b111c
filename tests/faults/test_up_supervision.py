"""`fanout up` supervises its children: one that is killed comes back on the same port, and the stack keeps
serving; a port another program takes is never the stack's."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import httpx
import pytest

from fanout.localstack.listener import NONCE_HEADER
from fanout.localstack.polling import wait_for
from fanout.localstack.processes import Child, free_port, spawn
from tests.support.fault_stack import descendants
from tests.support.up_restart import FANOUT, READY, UpStack, up_stack, wait_for_answer

pytestmark = pytest.mark.faults


def clean_environment() -> dict[str, str]:
    """This environment without FANOUT_* and PREFECT_* settings."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(("FANOUT_", "PREFECT_"))}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    return env


class Stranger:
    """Another program after `port`: once `begin()` holds it tries to bind the port every 50 ms, and
    answers 200 to every request once it has it."""

    def __init__(self, port: int, begin: Callable[[], bool]) -> None:
        self.port = port
        self.begin = begin
        self.server: ThreadingHTTPServer | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._take, name="stranger", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=10)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def _take(self) -> None:
        while not self._done.wait(0.05):
            if not self.begin():
                continue
            try:
                self.server = ThreadingHTTPServer(("127.0.0.1", self.port), AnswerAll)
            except OSError:
                continue
            threading.Thread(target=self.server.serve_forever, name="stranger-serves", daemon=True).start()
            return


class AnswerAll(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_POST = do_GET

    def log_message(self, *_: object) -> None:
        pass


def up_beside(stack: UpStack, port: int) -> Child:
    """`fanout up` on Prefect port `port`, once it is ready or has exited."""
    argv = [FANOUT, "up", "--home", str(stack.home), "--prefect-port", str(port), "--webhook-port", "0"]
    child = spawn(f"fanout-up-{len(stack.lives) + 1}", argv, stack.env, stack.project / "logs", cwd=stack.project)
    stack.lives.append(child)
    wait_for(
        lambda: READY in child.log_path.read_text() or child.process.poll() is not None,
        300,
        "fanout up to be ready or to exit",
        interval=0.5,
    )
    return child


def assert_one_line_refusal(child: Child, port: int) -> None:
    """`fanout up` exited non-zero and said why in one line, with no traceback."""
    assert child.process.returncode not in (None, 0)
    lines = child.log_path.read_text().splitlines()
    assert "Traceback" not in child.log_path.read_text(), child.log_tail()
    assert lines[-1].startswith("fanout: ") and str(port) in lines[-1], child.log_tail()


def assert_whole_and_its_own(stack: UpStack, child: Child, port: int) -> None:
    """`fanout up` runs, its Prefect API is on `port`, and what answers there and on the webhook is its own."""
    assert child.process.poll() is None, child.log_tail()
    api = stack.printed(child, "Prefect API")
    assert api == f"http://127.0.0.1:{port}/api"
    user, password = (stack.home / "prefect-auth").read_text().strip().split(":", 1)
    health = httpx.get(f"{api}/health", auth=httpx.BasicAuth(user, password), timeout=10)
    assert health.status_code == 200 and NONCE_HEADER in health.headers
    webhook = httpx.get(f"{stack.webhook(child)}/health", timeout=10)
    assert webhook.status_code == 200 and NONCE_HEADER in webhook.headers


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


@dataclass
class Supervised:
    """The module's `fanout up`, the Prefect port it was asked for, and the stranger that wants that port."""

    stack: UpStack
    up: Child
    port: int
    stranger: Stranger


@pytest.fixture(scope="module")
def supervised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervised]:
    """One `fanout up` for this module, on a free Prefect port that another program tries to take from the
    moment `fanout up` says it is starting, and goes on trying while the module's tests kill its children."""
    port = free_port()
    with up_stack(tmp_path_factory.mktemp("supervised") / "project", clean_environment()) as stack:
        log = stack.project / "logs" / "fanout-up-1.log"

        def starting() -> bool:
            return log.exists() and "starting Prefect server" in log.read_text()

        with Stranger(port, begin=starting) as stranger:
            yield Supervised(stack, up_beside(stack, port), port, stranger)


def test_a_server_wanting_the_prefect_port_once_up_is_starting_never_gets_it(supervised: Supervised) -> None:
    """From the moment `fanout up` says it is starting, its ports are bound: a server that tries to take the
    Prefect port then fails, and the stack comes up whole on its own ports."""
    assert supervised.stranger.server is None
    assert_whole_and_its_own(supervised.stack, supervised.up, supervised.port)


def test_a_killed_webhook_is_restarted_on_its_port_and_serves(supervised: Supervised) -> None:
    """SIGKILL of the webhook: `fanout up` says so, starts it again on the same port, /health answers."""
    stack, up = supervised.stack, supervised.up
    webhook = stack.webhook(up)
    kill_and_wait_for_restart(stack, up, "fanout.api.webhook", "webhook")
    assert "webhook exited with -9; restarting it in 1s (attempt 1)" in up.log_path.read_text()
    assert httpx.get(f"{webhook}/health", timeout=10).status_code == 200


def test_a_killed_prefect_server_is_restarted_and_a_run_completes(supervised: Supervised) -> None:
    """SIGKILL of the Prefect server: it comes back on its port, and a start through the webhook completes."""
    stack, up = supervised.stack, supervised.up
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


def test_a_prefect_port_held_by_another_program_is_a_one_line_error(tmp_path: Path) -> None:
    """A port another program listens on: `fanout up` exits 1 naming the port and the option that moves it."""
    port = free_port()
    with Stranger(port, begin=lambda: True) as stranger, up_stack(tmp_path / "project", clean_environment()) as stack:
        wait_for(lambda: stranger.server is not None, 30, "the stranger to take its port")
        up = up_beside(stack, port)
        assert_one_line_refusal(up, port)
        assert "--prefect-port N" in up.log_tail()


def test_a_server_taking_the_prefect_port_a_second_later_never_answers_for_the_stack(tmp_path: Path) -> None:
    """A server that starts a second after `fanout up` and wants its Prefect port: either `fanout up` comes
    up whole with everything answering its own, or it exits non-zero with a one-line message."""
    port = free_port()
    with up_stack(tmp_path / "project", clean_environment()) as stack:
        began = threading.Event()
        threading.Timer(1.0, began.set).start()
        with Stranger(port, begin=began.is_set) as stranger:
            up = up_beside(stack, port)
            if up.process.poll() is not None:
                assert_one_line_refusal(up, port)
            else:
                assert stranger.server is None
                assert_whole_and_its_own(stack, up, port)

"""`fanout up` as a user runs it, and the moves a machine restart makes on it: SIGKILL of every process
of the stack at once, then `fanout up` again in the same folder with the same database."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fanout.localstack.polling import wait_for
from fanout.localstack.processes import Child, spawn
from tests.support.database import seed_database
from tests.support.fault_stack import descendants

FANOUT = str(Path(sys.executable).with_name("fanout"))
READY = "Ctrl-C stops everything"


@dataclass
class UpStack:
    """One project folder in which `fanout up` is started, killed and started again."""

    project: Path
    env: Mapping[str, str]
    lives: list[Child] = field(default_factory=list)

    @property
    def home(self) -> Path:
        return self.project / ".fanout"

    def start(self, *options: str, timeout: float = 300) -> Child:
        """`fanout up` in the project folder; returns once it printed its banner."""
        seeded = seed_database(self.home / "prefect") if "postgres" not in options else {}
        argv = [FANOUT, "up", "--home", str(self.home), *options]
        env = {**self.env, **seeded}
        child = spawn(f"fanout-up-{len(self.lives) + 1}", argv, env, self.project / "logs", cwd=self.project)
        self.lives.append(child)
        wait_for(
            lambda: READY in child.log_path.read_text() or child.process.poll() is not None,
            timeout,
            "fanout up to be ready",
            interval=0.5,
        )
        if child.process.poll() is not None:
            raise RuntimeError(f"fanout up exited with {child.process.returncode}:\n{child.log_tail()}")
        return child

    def printed(self, child: Child, label: str) -> str:
        """What `fanout up` printed after `label:`."""
        match = re.search(rf"^{label}:\s+(\S+)", child.log_path.read_text(), re.M)
        if not match:
            raise AssertionError(child.log_tail())
        return match.group(1)

    def webhook(self, child: Child) -> str:
        return self.printed(child, "Webhook").removesuffix("/api/start-fanout")

    def run_history(self, child: Child, instance: str) -> list[str]:
        """`name: message` of every state of the instance's newest flow run, read from the Prefect API."""
        api = self.printed(child, "Prefect API")
        user, password = (self.home / "prefect-auth").read_text().strip().split(":", 1)
        with httpx.Client(base_url=api, auth=httpx.BasicAuth(user, password), timeout=30) as client:
            runs = client.post(
                "/flow_runs/filter", json={"flow_runs": {"tags": {"all_": [f"fanout.instance:{instance}"]}}}
            ).json()
            states = client.get("/flow_run_states/", params={"flow_run_id": runs[0]["id"]}).json()
        ordered = sorted(states, key=lambda state: str(state["timestamp"]))
        return [f"{state['name']}: {state.get('message') or ''}" for state in ordered]

    def token(self) -> str:
        return (self.home / "webhook-token").read_text().strip()

    def kill_everything(self, child: Child) -> list[int]:
        """SIGKILL `fanout up` and every process below it at once, as a power cut would."""
        victims = [child.process.pid, *descendants(child.process.pid)]
        for pid in victims:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid in victims:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        child.process.wait()
        return victims

    def forget_automation_windows(self) -> int:
        """Delete the automations' open windows from the stopped server's SQLite database, as a probe saw a
        restarted server come back without them: only the reconcile pass can then resume a run."""
        with sqlite3.connect(self.home / "prefect" / "prefect.db") as database:
            return database.execute("DELETE FROM automation_bucket").rowcount

    def stop_all(self) -> None:
        for child in self.lives:
            if child.process.poll() is None:
                child.stop(grace=30)
            for pid in descendants(child.process.pid):
                with suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


@contextmanager
def up_stack(project: Path, env: Mapping[str, str]) -> Iterator[UpStack]:
    """A project folder for `fanout up`; every process it started is stopped at the end."""
    project.mkdir(parents=True, exist_ok=True)
    stack = UpStack(project, env)
    try:
        yield stack
    finally:
        stack.stop_all()


class StatusLog:
    """Polls a status URL from a thread like a durable client and keeps every answer: (time, code, status)."""

    def __init__(self, token: str, poll: float = 0.25) -> None:
        self.base_url = ""
        self.path = ""
        self._token = token
        self._poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="status-log", daemon=True)
        self.answers: list[tuple[float, int, str, dict[str, Any]]] = []

    def watch(self, base_url: str, path: str) -> None:
        self.base_url, self.path = base_url, path
        if not self._thread.is_alive():
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                response = httpx.get(
                    self.base_url + self.path, headers={"Authorization": f"Bearer {self._token}"}, timeout=10
                )
                body = response.json()
                self.answers.append((time.time(), response.status_code, str(body.get("runtimeStatus")), body))
            except Exception as error:  # noqa: BLE001 - a refused or odd answer is an answer too
                self.answers.append((time.time(), 0, type(error).__name__, {}))
            self._stop.wait(self._poll)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def first_200(self) -> tuple[float, str, dict[str, Any]] | None:
        return next(((at, status, body) for at, code, status, body in self.answers if code == 200), None)


def wait_for_answer(call: Callable[[], httpx.Response], code: int, timeout: float, what: str) -> httpx.Response:
    """The first answer of `call` with status `code`, calling again every quarter second (refusals count as no answer)."""

    def answered() -> httpx.Response | None:
        try:
            response = call()
        except httpx.HTTPError:
            return None
        return response if response.status_code == code else None

    found = wait_for(answered, timeout, what, interval=0.25)
    assert found is not None
    return found

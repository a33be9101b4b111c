"""Start and stop the local processes the dev stack runs (Prefect server, workers, HTTP apps).

Each child gets its own process group on a free 127.0.0.1 port, so stopping it
also stops whatever it spawned (a flow-run subprocess, an embedded server),
and a failing caller still stops it through the context manager. Each starts
with an owner-only umask (src/fanout/localstack/permissions.py): the database, logs and
checkpoints it writes are readable by its user alone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fanout.localstack.local_server import (
    LOOPBACK as LOOPBACK,  # re-exported: the stack and postgres import it from here
)
from fanout.localstack.local_server import server_argv
from fanout.localstack.permissions import PRIVATE_UMASK


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass
class Child:
    """A started child process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the child's process group, then SIGKILL it if it lingers."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a host crash would."""
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the child wrote, for error messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


def _signal_group(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def spawn(name: str, argv: Sequence[str], env: Mapping[str, str], log_dir: Path, cwd: Path | None = None) -> Child:
    """Start `argv` in a new process group with an owner-only umask, its output appended to `<log_dir>/<name>.log`."""
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    with os.fdopen(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab") as log:
        process = subprocess.Popen(
            list(argv),
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
    return Child(name=name, process=process, log_path=log_path)


def wait_healthy(url: str, child: Child, timeout: float = 120.0) -> None:
    """Poll `url` until it answers 200, or raise with the child's last output."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.process.returncode}:\n{child.log_tail()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{child.name} not healthy at {url} after {timeout:.0f}s:\n{child.log_tail()}")


@dataclass
class PrefectServer:
    """A `prefect server start` on loopback, with its own PREFECT_HOME.

    The database is SQLite in that home unless `database_url` names another one
    (`postgresql+asyncpg://...` for production). With `auth_string` the API
    refuses clients that do not send it (Prefect's basic auth); `client_env()`
    passes it to whatever we start against this server.
    """

    home: Path
    port: int = field(default_factory=free_port)
    extra_env: Mapping[str, str] = field(default_factory=dict)
    child: Child | None = None
    database_url: str | None = None
    auth_string: str | None = None

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment for any process that should talk to this server."""
        env = {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **self.extra_env,
        }
        if self.auth_string:
            env["PREFECT_API_AUTH_STRING"] = self.auth_string
        return env

    def server_env(self) -> dict[str, str]:
        """Environment of the server process itself: its address, database and auth."""
        env = {**self.client_env(), "PREFECT_SERVER_API_HOST": LOOPBACK, "PREFECT_SERVER_API_PORT": str(self.port)}
        env.pop("PREFECT_API_URL")
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        if self.auth_string:
            env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth_string
        else:  # open means open: not an auth string inherited from the caller's environment
            env.pop("PREFECT_SERVER_API_AUTH_STRING", None)
        return env

    def start(self, timeout: float = 180.0) -> PrefectServer:
        """Start the server and wait until its health check answers."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = self.server_env()
        argv = server_argv(self.port)
        self.child = spawn("prefect-server", argv, env, self.home / "logs")
        wait_healthy(f"{self.api_url}/health", self.child, timeout)
        return self

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()


@contextmanager
def running_prefect_server(home: Path, **options: object) -> Iterator[PrefectServer]:
    """A started Prefect server that is stopped on exit, whatever happened inside."""
    server = PrefectServer(home=home, **options)  # type: ignore[arg-type]
    try:
        yield server.start()
    finally:
        server.stop()

"""The Prefect server `fanout run` talks to: one that already runs, or one it starts once and leaves up.

Prefect's embedded (ephemeral) server costs every `fanout run` 4.6-10 s of
start-up before a flow that takes half a second. Instead `fanout run` uses, in
this order:

1. `PREFECT_API_URL`, when set: the user's own server;
2. the background server an earlier `fanout run` started (its state file,
   `<home>/server/server.json`, names its pid and URL, and it answers /health);
3. else a new local Prefect server (`prefect server start`'s app, src/fanout/localstack/prefect_server.py) on a free 127.0.0.1 port, detached in its
   own session (SQLite and log under `<home>/server/`), which then serves every
   later run.

Whatever it starts or reuses is announced on stderr with how to stop it:
`fanout server stop`. Nothing is left behind silently.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from fanout.core.private_files import make_folders, open_private, write_private
from fanout.localstack.permissions import PRIVATE_UMASK

LOOPBACK = "127.0.0.1"
STATE_FILE = "server.json"
START_TIMEOUT_SECONDS = 600.0
"""A fresh database is migrated at first start: 10-20 s on a quiet 2-core machine, minutes on a busy one."""
STOP_COMMAND = "fanout server stop"


SERVER_MODULE = "fanout.localstack.prefect_server"


def server_argv(port: int) -> list[str]:
    """The local Prefect server on loopback at `port`, from this interpreter: `prefect server start`'s app
    with a quick `Retry-After` on SQLite's 503s (src/fanout/localstack/prefect_server.py), without telemetry."""
    return [sys.executable, "-m", SERVER_MODULE, "--host", LOOPBACK, "--port", str(port)]


@dataclass(frozen=True)
class BackgroundServer:
    """A `prefect server start` that fanout started and left running."""

    pid: int
    port: int
    home: str

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/api"

    @property
    def log_path(self) -> Path:
        return Path(self.home) / "server.log"


def server_folder(home: Path) -> Path:
    """Where the background server keeps its database, log and state file."""
    return home.resolve() / "server"


def read_state(home: Path) -> BackgroundServer | None:
    """The background server recorded in `home`, if its process is still that server."""
    path = server_folder(home) / STATE_FILE
    try:
        server = BackgroundServer(**json.loads(path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return server if _is_prefect_server(server.pid) else None


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """True when the Prefect API at `api_url` answers its health check."""
    try:
        return httpx.get(f"{api_url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def ensure_server(home: Path, say: Callable[[str], None]) -> BackgroundServer:
    """The running background server of `home`, started now if there is none (see the module docstring)."""
    folder = server_folder(home)
    make_folders(folder)
    with _locked(folder / "server.lock"):
        server = read_state(home)
        if server is not None and _wait_healthy(server, timeout=START_TIMEOUT_SECONDS):
            say(
                f"fanout: using the Prefect server fanout started at {server.api_url} (pid {server.pid}); "
                f"`{STOP_COMMAND}` stops it"
            )
            return server
        if server is not None:
            stop(home)
        server = _start(folder)
        say(
            f"fanout: started a Prefect server at {server.api_url} (pid {server.pid}, log {server.log_path}); "
            f"it stays up for later runs; `{STOP_COMMAND}` stops it"
        )
        if not _wait_healthy(server, timeout=START_TIMEOUT_SECONDS):
            tail = _tail(server.log_path)
            stop(home)
            raise RuntimeError(f"the Prefect server did not become healthy; it was stopped. Its log:\n{tail}")
        return server


def stop(home: Path, grace: float = 10.0) -> BackgroundServer | None:
    """Stop the background server of `home` (its whole session) and forget it; None when none ran."""
    folder = server_folder(home)
    server = read_state(home)
    (folder / STATE_FILE).unlink(missing_ok=True)
    if server is None:
        return None
    _signal_group(server.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and _alive(server.pid):
        time.sleep(0.1)
    _signal_group(server.pid, signal.SIGKILL)
    return server


def _start(folder: Path) -> BackgroundServer:
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(folder / "prefect"),
        "PREFECT_SERVER_API_HOST": LOOPBACK,
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    env.pop("PREFECT_API_URL", None)
    argv = server_argv(port)
    with os.fdopen(open_private(folder / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND), "ab") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=folder,
            start_new_session=True,
            umask=PRIVATE_UMASK,  # its database and logs are fanout's home: owner-only
        )
    server = BackgroundServer(pid=process.pid, port=port, home=str(folder))
    write_private(folder / STATE_FILE, json.dumps(asdict(server)).encode())
    return server


def _wait_healthy(server: BackgroundServer, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if healthy(server.api_url):
            return True
        if not _alive(server.pid) or time.monotonic() > deadline:
            return False
        time.sleep(0.1)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One `fanout run` at a time decides whether to start the server."""
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _is_prefect_server(pid: int) -> bool:
    """True when `pid` is alive and is the server `server_argv` starts, or the `prefect server start`
    an earlier fanout started (not a recycled pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    ours = SERVER_MODULE.encode() in argv or (b"server" in argv and b"start" in argv)
    return ours and _alive(pid)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _signal_group(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""

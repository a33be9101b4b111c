"""The Prefect server `fanout run` talks to: `PREFECT_API_URL` when set, else one it starts once and leaves up.

Prefect's embedded server costs every run seconds of start-up, so `fanout run` reuses the background
server an earlier run started (its state file, `<home>/server/server.json`, names its pid, port and
nonce), else starts one detached in its own session, and says so on stderr with how to stop it:
`fanout server stop`.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from fanout.core.private_files import make_folders, open_private, write_private
from fanout.localstack.polling import wait_for
from fanout.localstack.prefect_server import SERVER_MODULE, server_argv, with_server_defaults
from fanout.localstack.processes import LOOPBACK, alive, answers_as, listen, new_nonce, spawn, stop_group, tail

STATE_FILE = "server.json"
START_TIMEOUT_SECONDS = 600.0
"""A fresh database is migrated at first start, which takes minutes on a busy machine."""
STOP_COMMAND = "fanout server stop"


@dataclass(frozen=True)
class BackgroundServer:
    """A local Prefect server that fanout started and left running."""

    pid: int
    port: int
    home: str
    nonce: str = ""

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


def healthy(server: BackgroundServer, timeout: float = 2.0) -> bool:
    """True when the background server answers its health check with its own nonce."""
    return bool(answers_as(f"{server.api_url}/health", server.nonce or None, timeout))


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
            log = tail(server.log_path, 30)
            stop(home)
            raise RuntimeError(f"the Prefect server did not become healthy; it was stopped. Its log:\n{log}")
        return server


def stop(home: Path, grace: float = 10.0) -> BackgroundServer | None:
    """Stop the background server of `home` (its whole session) and forget it; None when none ran."""
    folder = server_folder(home)
    server = read_state(home)
    (folder / STATE_FILE).unlink(missing_ok=True)
    if server is None:
        return None
    stop_group(server.pid, grace)
    return server


def _start(folder: Path) -> BackgroundServer:
    """The server on a socket bound here (any free port), detached: the socket goes with it."""
    nonce = new_nonce()
    with listen(0) as listener:
        port = int(listener.getsockname()[1])
        env = {
            **os.environ,
            "PREFECT_HOME": str(folder / "prefect"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        env.pop("PREFECT_API_URL", None)
        with_server_defaults(env)
        argv = server_argv(listener.fileno(), nonce)
        child = spawn("server", argv, env, folder, cwd=folder, pass_fds=[listener.fileno()], outlives_parent=True)
    server = BackgroundServer(pid=child.process.pid, port=port, home=str(folder), nonce=nonce)
    write_private(folder / STATE_FILE, json.dumps(asdict(server)).encode())
    return server


def _wait_healthy(server: BackgroundServer, timeout: float) -> bool:
    """Whether the server answers as itself before it dies or `timeout` passes."""
    try:
        wait_for(lambda: healthy(server) or not alive(server.pid), timeout, "the Prefect server to answer")
    except TimeoutError:
        return False
    return healthy(server)


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
    """True when `pid` is alive and is the server `server_argv` starts (not a recycled pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return SERVER_MODULE.encode() in argv and alive(pid)

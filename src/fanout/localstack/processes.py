"""Start, watch and stop the local processes of a stack (Prefect server, workers, HTTP apps).

Each child runs in its own process group, so stopping it also stops whatever it spawned, with an
owner-only umask (src/fanout/localstack/permissions.py). A server child is handed a socket its parent
already bound (`listen`), so no other program can take its port between a check and the bind; it
puts the parent's nonce on every answer, so the health check knows the answer is its own.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from fanout.core.prefect_adapter import tls_context_for
from fanout.localstack.listener import NONCE_HEADER
from fanout.localstack.permissions import PRIVATE_UMASK
from fanout.localstack.polling import wait_for
from fanout.localstack.prefect_server import server_argv, with_server_defaults

LOOPBACK = "127.0.0.1"
PR_SET_PDEATHSIG = 1


class PortTaken(RuntimeError):
    """A port the stack must use is held by another program."""


class ChildFailed(RuntimeError):
    """A child exited, or did not answer as itself, while starting; the message is one line."""


def listen(port: int, host: str = LOOPBACK) -> socket.socket:
    """A listening socket on `host:port` (0: any free port) for a child to serve on, or `PortTaken`.

    SO_REUSEADDR, as servers set it: a port whose last connections sit in TIME_WAIT after a
    restart is free to us; one that another program listens on is not.
    """
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
        listener.listen(128)
    except OSError as error:
        listener.close()
        raise PortTaken(f"port {port} on {host} is taken by another program ({error.strerror})") from None
    return listener


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, for a program that binds its own
    port (PostgreSQL, a test's server); a child of ours is handed a `listen` socket instead."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def new_nonce() -> str:
    """A value a child echoes on every answer, so its parent tells it from a stranger on the same port."""
    return secrets.token_hex(16)


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def signal_group(pid: int, signum: int) -> None:
    """Send `signum` to the process group `pid` leads; gone already is fine."""
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


def stop_group(pid: int, grace: float = 10.0) -> None:
    """SIGTERM the process group `pid` leads, then SIGKILL it if its leader lingers past `grace`."""
    signal_group(pid, signal.SIGTERM)
    with suppress(TimeoutError):
        wait_for(lambda: not alive(pid), grace, f"process {pid} to stop")
    signal_group(pid, signal.SIGKILL)


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file (empty when there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


@dataclass
class Child:
    """A started child process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the child's process group, then SIGKILL it if it lingers."""
        if self.process.poll() is None:
            signal_group(self.process.pid, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.process.wait(grace)
        self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process group at once, as a host crash would."""
        signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines the child wrote, for error messages."""
        return tail(self.log_path, lines)


def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path,
    cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
    outlives_parent: bool = False,
) -> Child:
    """Start `argv` in a new process group with an owner-only umask, its output appended to
    `<log_dir>/<name>.log`; `pass_fds` (a listening socket) stay open in the child. Unless it
    `outlives_parent` (a server left running in the background), the child is sent SIGTERM when this
    process dies, however it dies."""
    children_hear_interrupts()
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
            pass_fds=tuple(pass_fds),
            preexec_fn=None if outlives_parent else parent_death_signal(),
        )
    return Child(name=name, process=process, log_path=log_path)


def parent_death_signal() -> Callable[[], None] | None:
    """A `preexec_fn` that has Linux send the child SIGTERM when its parent dies (PR_SET_PDEATHSIG), so a
    supervisor killed with SIGKILL leaves no stack behind to hold its ports; None elsewhere. The kernel
    ties the signal to the thread that starts the child, so only the main thread, which lives as long as
    the process, asks for it."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up here: the child only calls it
    parent = os.getpid()

    def set_signal() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was set
            os.kill(os.getpid(), signal.SIGTERM)

    return set_signal


def children_hear_interrupts() -> None:
    """Stop ignoring SIGINT (as a shell's background job does), so the children started next do not ignore
    it either: a Prefect worker stops on SIGTERM by sending itself SIGINT, and one that ignores it runs on
    until its supervisor's grace ends and it is killed. Only the main thread may set a handler; the first
    child is started from it."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def answers_as(url: str, nonce: str | None, timeout: float = 2.0) -> bool | None:
    """Whether `url` answers 200 (carrying `nonce`, when given): True; None while nothing answers;
    False when something answers 200 without the nonce, which is then not the child we started."""
    try:
        response = httpx.get(url, timeout=timeout, verify=tls_context_for(url))
    except httpx.HTTPError:
        return None
    if response.status_code != 200:
        return None
    return nonce is None or response.headers.get(NONCE_HEADER) == nonce


def wait_ready(child: Child, ready: Callable[[], bool | None], what: str, timeout: float = 120.0) -> None:
    """Poll `ready()` until it is true; `ChildFailed` in one line when the child exits first, when `ready()`
    is False (something else answers in its place), or when `timeout` passes."""

    def answered() -> bool | None:
        if child.process.poll() is not None:
            raise ChildFailed(
                f"{child.name} exited with {child.process.returncode} while starting (log: {child.log_path})"
            )
        verdict = ready()
        if verdict is False:
            raise ChildFailed(f"something other than {child.name} answers {what} (log: {child.log_path})")
        return verdict

    try:
        wait_for(answered, timeout, f"{child.name} answering {what}", interval=0.25)
    except TimeoutError:
        raise ChildFailed(f"{child.name} did not answer {what} within {timeout:.0f}s (log: {child.log_path})") from None


def wait_healthy(url: str, child: Child, timeout: float = 120.0, nonce: str | None = None) -> None:
    """Wait until the child answers 200 at `url` (with its `nonce`, when given); see `wait_ready`."""
    wait_ready(child, lambda: answers_as(url, nonce), f"at {url}", timeout)


@dataclass
class PrefectServer:
    """A local Prefect server on loopback, with its own PREFECT_HOME.

    The database is SQLite in that home unless `database_url` names another one
    (`postgresql+asyncpg://...` for production). With `auth_string` the API
    refuses clients that do not send it (Prefect's basic auth); `client_env()`
    passes it to whatever we start against this server. `port` 0 is any free
    port; the one bound is kept, so a restart comes back on it.
    """

    home: Path
    port: int = 0
    extra_env: Mapping[str, str] = field(default_factory=dict)
    child: Child | None = None
    database_url: str | None = None
    auth_string: str | None = None
    listener: socket.socket | None = None
    """The bound socket the server is handed; kept between restarts so the port stays the stack's."""
    nonce: str = field(default_factory=new_nonce)

    @property
    def api_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment for any process that should talk to this server.

        Unless the server is told to protect against CSRF, its clients do not ask it for a CSRF token
        (Prefect's clients otherwise ask once per client, and a flow run's process makes two).
        """
        env = {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            **self.extra_env,
        }
        if not _truthy(env.get("PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED", "")):
            env.setdefault("PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", "false")
        if self.auth_string:
            env["PREFECT_API_AUTH_STRING"] = self.auth_string
        return env

    def server_env(self) -> dict[str, str]:
        """Environment of the server process itself: its address, database and auth, and the local server's defaults."""
        env = {**self.client_env(), "PREFECT_SERVER_API_HOST": LOOPBACK, "PREFECT_SERVER_API_PORT": str(self.port)}
        env.pop("PREFECT_API_URL")
        with_server_defaults(env)
        if self.database_url:
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = self.database_url
        if self.auth_string:
            env["PREFECT_SERVER_API_AUTH_STRING"] = self.auth_string
        else:  # open means open: not an auth string inherited from the caller's environment
            env.pop("PREFECT_SERVER_API_AUTH_STRING", None)
        return env

    def bind(self) -> socket.socket:
        """The server's listening socket, bound now if it is not yet (`PortTaken` when another program
        holds the port)."""
        if self.listener is None:
            self.listener = listen(self.port)
        self.port = int(self.listener.getsockname()[1])
        return self.listener

    def start(self, timeout: float = 180.0) -> PrefectServer:
        """Start the server on its socket and wait until its health check answers with its nonce."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = self.bind().fileno()
        argv = server_argv(descriptor, self.nonce)
        self.child = spawn("prefect-server", argv, self.server_env(), self.home / "logs", pass_fds=[descriptor])
        wait_healthy(f"{self.api_url}/health", self.child, timeout, self.nonce)
        return self

    def stop(self) -> None:
        """Stop the server and let its port go."""
        if self.child is not None:
            self.child.stop()
        if self.listener is not None:
            self.listener.close()
            self.listener = None


def _truthy(value: str) -> bool:
    """A boolean setting's value as Prefect's settings read it."""
    return value.strip().lower() in {"1", "true", "yes", "on", "t", "y"}


@contextmanager
def running_prefect_server(home: Path, **options: object) -> Iterator[PrefectServer]:
    """A started Prefect server that is stopped on exit, whatever happened inside."""
    server = PrefectServer(home=home, **options)  # type: ignore[arg-type]
    try:
        yield server.start()
    finally:
        server.stop()

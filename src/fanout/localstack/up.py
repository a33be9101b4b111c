"""`fanout up`: the local stack in the foreground, closed to other users by default, until Ctrl-C or SIGTERM.

Prefect API auth is on (`--no-auth` turns it off), the home is owner-only, and everything listens on
127.0.0.1. The stack binds its ports before it starts anything and hands each server its socket, so
the ports stay its own across restarts of a child: the ones asked for, else those recorded in the home
last time, else 4200 and 8000. A port another program holds, or a child that fails to start, is a
one-line error. A child that dies later is started again after a backoff (`Supervisor`).
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fanout.core.private_files import write_private
from fanout.localstack.deploy import project_file
from fanout.localstack.permissions import PRIVATE_UMASK, make_private
from fanout.localstack.processes import Child, PortTaken, listen
from fanout.localstack.production import ensure_auth_string, stack_database
from fanout.localstack.stack import URL_FILE, WARM_WORKER, LocalStack, ensure_token

Say = Callable[[str], object]
PORTS_FILE = "ports.json"
LOCK_FILE = "up.lock"
DEFAULT_PREFECT_PORT = 4200
DEFAULT_WEBHOOK_PORT = 8000


@dataclass(frozen=True)
class UpOptions:
    """What `fanout up` was asked for."""

    home: Path
    prefect_port: int | None = None
    """None: the port used last time (recorded in the home), else 4200; 0: any free port."""
    webhook_port: int | None = None
    database: str = "sqlite"
    database_url: str | None = None
    auth: bool = True


class HomeBusy(RuntimeError):
    """Another `fanout up` runs on this home."""


@contextmanager
def home_lock(home: Path) -> Iterator[None]:
    """Hold `home` for this `fanout up`, or raise `HomeBusy` naming the process that holds it: two stacks
    on one home would share its database and overwrite each other's URL, token and port files. The lock
    is the system's (flock), so it goes with the process however that ends."""
    descriptor = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(descriptor, 32, 0).decode(errors="replace").strip() or "unknown"
            raise HomeBusy(f"fanout up already runs on {home} (pid {holder}); stop it, or pass --home DIR") from None
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(descriptor)


class HomeUnusable(RuntimeError):
    """The home cannot be created or made private; the message names it and says why."""


class Interrupted(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C so every child is stopped."""


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted()


def listen_for(port: int, option: str) -> socket.socket:
    """A socket bound to `port` (0: any free port) for the stack, else `PortTaken` saying which option moves it."""
    try:
        return listen(port)
    except PortTaken as taken:
        raise PortTaken(f"{taken}; stop it, or pass {option} N (0: any free port)") from None


def stack_ports(home: Path, prefect_port: int | None, webhook_port: int | None) -> tuple[int, int]:
    """The Prefect and webhook ports: as asked, else as recorded in the home last time, else the defaults."""
    recorded = recorded_ports(home)
    prefect = recorded.get("prefect", DEFAULT_PREFECT_PORT) if prefect_port is None else prefect_port
    webhook = recorded.get("webhook", DEFAULT_WEBHOOK_PORT) if webhook_port is None else webhook_port
    return prefect, webhook


@contextmanager
def stack_listeners(home: Path, options: UpOptions) -> Iterator[tuple[socket.socket, socket.socket]]:
    """The Prefect and webhook sockets, bound before anything starts and closed at the end."""
    prefect_port, webhook_port = stack_ports(home, options.prefect_port, options.webhook_port)
    with listen_for(prefect_port, "--prefect-port") as prefect, listen_for(webhook_port, "--webhook-port") as webhook:
        yield prefect, webhook


def recorded_ports(home: Path) -> dict[str, int]:
    """The ports the stack in `home` used last time (none when it never ran or the record is unreadable)."""
    try:
        data = json.loads((home / PORTS_FILE).read_text())
        return {name: int(data[name]) for name in ("prefect", "webhook") if name in data}
    except (OSError, ValueError, TypeError):
        return {}


def record_ports(home: Path, stack: LocalStack) -> None:
    assert stack.server is not None
    write_private(home / PORTS_FILE, json.dumps({"prefect": stack.server.port, "webhook": stack.webhook_port}).encode())


def up(options: UpOptions, say: Say = print) -> int:
    """Prepare the private home, start the database if asked, then the stack; the exit code.

    Raises `PostgresNotAvailable` when `--database postgres` has no PostgreSQL to run, `HomeUnusable` when
    the home cannot be created or written.
    """
    home = options.home.resolve()
    previous_umask = os.umask(PRIVATE_UMASK)
    try:
        try:
            # As root a local PostgreSQL runs as the `postgres` user, who must reach <home>/postgres.
            make_private(home, pass_through=options.database == "postgres" and os.geteuid() == 0)
            auth = ensure_auth_string(home) if options.auth else None
        except OSError as error:
            raise HomeUnusable(f"cannot create or use {home} as its home: {error}") from None
        with (
            home_lock(home),
            stack_listeners(home, options) as (prefect_listener, webhook_listener),  # a port taken ends it here
            stack_database(home, options.database, options.database_url) as url,
        ):
            stack = LocalStack(
                home=home,
                database_url=url,
                prefect_listener=prefect_listener,
                webhook_listener=webhook_listener,
                auth_string=auth[0] if auth else None,
                project=Path.cwd() if project_file(Path.cwd()) else None,
            )
            return supervise(stack, home, options, auth, say)
    finally:
        os.umask(previous_umask)


def supervise(stack: LocalStack, home: Path, options: UpOptions, auth: tuple[str, str] | None, say: Say) -> int:
    """Start the stack, say where everything is, and keep it up until Ctrl-C, SIGTERM or a child that
    keeps failing; the stack is stopped on the way out, whatever happened. `auth` is the Prefect API auth
    string and where clients find it, or None (`--no-auth`)."""
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    token_source = ensure_token(home)[1]
    database_url = stack.database_url
    try:
        say(
            f"starting Prefect server, deployments, a warm worker ({WARM_WORKER}) and webhook "
            f"(logs in {home / 'logs'}) ..."
        )
        stack.start()
        record_ports(home, stack)
        write_private(home / URL_FILE, stack.webhook_url.encode())
        make_private(home, pass_through=options.database == "postgres" and os.geteuid() == 0)
        for line in banner(stack, token_source, database_url, auth):
            say(line)
        stack.reconcile_in_background()  # runs a restart left Running, for `process` workers too
        return Supervisor(stack, say).watch()
    except (KeyboardInterrupt, Interrupted):
        say("stopping ...")
        return 0
    finally:
        stack.stop()
        signal.signal(signal.SIGTERM, previous)


def banner(stack: LocalStack, token_source: str, database_url: str | None, auth: tuple[str, str] | None) -> list[str]:
    """What `fanout up` prints once the stack is up: where everything is and how to reach it."""
    lines = [
        f"Prefect UI:   {stack.ui_url}",
        f"Prefect API:  {stack.api_url}",
        f"Webhook:      {stack.webhook_url}/api/start-fanout",
        f"Token:        {token_source}",
    ]
    if database_url:
        lines.append(f"Database:     {database_url.split('@')[-1]} (PostgreSQL)")
    if auth:
        lines.append(f"Prefect auth: {auth[1]} (clients set PREFECT_API_AUTH_STRING to it; the UI asks for it)")
    else:
        lines.append("Prefect auth: off (--no-auth): anyone on this machine can call the Prefect API")
    if stack.project is not None:
        start = f"{stack.webhook_url}/runtime/webhooks/durabletask/orchestrators/<flow or deployment name>"
        lines += [
            f"Project:      {stack.project / 'prefect.yaml'} (a warm worker on {', '.join(stack.pools())})",
            f"Start:        POST {start} (body: the input, any JSON)",
        ]
    else:
        lines.append(f"Try:          fanout start --url {stack.webhook_url} --wait")
    lines.append("Ctrl-C stops everything.")
    return lines


MAX_FAILURES = 5
"""Restarts in a row of a child that never stayed up `STABLE_SECONDS`, after which the stack stops."""
STABLE_SECONDS = 60.0
BACKOFF_SECONDS = (1.0, 2.0, 4.0, 8.0, 16.0, 30.0)


def backoff(attempt: int) -> float:
    """Seconds before the `attempt`-th restart in a row (1, 2, 4, ... at most 30)."""
    return BACKOFF_SECONDS[min(attempt, len(BACKOFF_SECONDS)) - 1]


@dataclass
class Supervisor:
    """Keeps the stack's children up: restarts a dead one after a backoff, stops when one keeps failing."""

    stack: LocalStack
    say: Say
    sleep: Callable[[float], object] = time.sleep
    clock: Callable[[], float] = time.monotonic
    poll_seconds: float = 0.5

    def __post_init__(self) -> None:
        now = self.clock()
        self._started = {child.name: now for child in self.stack.children()}
        self._failures: dict[str, int] = {}

    def watch(self) -> int:
        """Supervise until a child keeps failing (exit code 1); Ctrl-C and SIGTERM end it by raising."""
        while True:
            for child in self.stack.children():
                if child.process.poll() is not None and not self.restart(child):
                    return 1
            self.sleep(self.poll_seconds)

    def restart(self, child: Child) -> bool:
        """Start a dead child again after its backoff; False when it failed too often in a row."""
        name = child.name
        if self.clock() - self._started.get(name, 0.0) >= STABLE_SECONDS:
            self._failures[name] = 0
        attempt = self._failures.get(name, 0) + 1
        self._failures[name] = attempt
        if attempt > MAX_FAILURES:
            self.say(f"{name} failed {MAX_FAILURES} times in a row; stopping (log: {child.log_path})")
            return False
        delay = backoff(attempt)
        self.say(f"{name} exited with {child.process.returncode}; restarting it in {delay:.0f}s (attempt {attempt})")
        self.sleep(delay)
        self._started[name] = self.clock()
        try:
            self.stack.restart(child)
        except (RuntimeError, TimeoutError, OSError) as error:
            self.say(f"{name} did not start again: {str(error).splitlines()[0] if str(error) else error!r}")
            return True  # still dead: the next round counts another failure
        self.say(f"{name} restarted")
        return True

"""`fanout up`: the local stack in the foreground, closed to other users by default, until Ctrl-C or SIGTERM.

Safe by default, for a stack on a shared machine:

- **Prefect API auth is on.** The server requires `PREFECT_SERVER_API_AUTH_STRING`
  (generated once into `<home>/prefect-auth`, src/fanout/localstack/production.py), and every
  process the stack starts gets it as `PREFECT_API_AUTH_STRING`. Without it,
  anyone on the machine could start runs (an event to `/api/events`) or delete
  them through the API. `--no-auth` opens it again.
- **Its home is private**: 0700, every file 0600, and every process it starts
  has umask 077 (src/fanout/localstack/permissions.py).
- Everything listens on 127.0.0.1 only; the webhook needs its bearer token.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fanout.localstack.deploy import project_file
from fanout.localstack.permissions import PRIVATE_UMASK, make_private
from fanout.localstack.processes import LOOPBACK, free_port
from fanout.localstack.production import ensure_auth_string, stack_database
from fanout.localstack.stack import URL_FILE, WARM_WORKER, LocalStack, ensure_token, write_private

Say = Callable[[str], object]


@dataclass(frozen=True)
class UpOptions:
    """What `fanout up` was asked for."""

    home: Path
    prefect_port: int = 4200
    webhook_port: int = 8000
    database: str = "sqlite"
    database_url: str | None = None
    auth: bool = True


class Interrupted(BaseException):
    """SIGTERM arrived: unwind like Ctrl-C so every child is stopped."""


def _raise_interrupted(signum: int, frame: object) -> None:
    raise Interrupted()


def port_or_free(port: int) -> int:
    """`port` when it is free on loopback (0 means any), else a free one."""
    if port:
        with socket.socket() as probe:
            try:
                probe.bind((LOOPBACK, port))
                return port
            except OSError:
                pass
    return free_port()


def up(options: UpOptions, say: Say = print) -> int:
    """Prepare the private home, start the database if asked, then the stack; the exit code.

    Raises `PostgresNotAvailable` when `--database postgres` has no PostgreSQL to run.
    """
    home = options.home.resolve()
    previous_umask = os.umask(PRIVATE_UMASK)
    try:
        # As root a local PostgreSQL runs as the `postgres` user, who must reach <home>/postgres.
        make_private(home, pass_through=options.database == "postgres" and os.geteuid() == 0)
        auth = ensure_auth_string(home) if options.auth else None
        with stack_database(home, options.database, options.database_url) as url:
            return run_up(home, options, url, auth, say)
    finally:
        os.umask(previous_umask)


def run_up(home: Path, options: UpOptions, database_url: str | None, auth: tuple[str, str] | None, say: Say) -> int:
    """Start the stack, print where everything is, and keep it up until Ctrl-C or SIGTERM.

    `auth` is the Prefect API auth string and where clients find it, or None (`--no-auth`).
    """
    previous = signal.signal(signal.SIGTERM, _raise_interrupted)
    stack = LocalStack(
        home=home,
        database_url=database_url,
        prefect_port=port_or_free(options.prefect_port),
        webhook_port=port_or_free(options.webhook_port),
        auth_string=auth[0] if auth else None,
        project=Path.cwd() if project_file(Path.cwd()) else None,
    )
    token_source = ensure_token(home)[1]
    try:
        say(
            f"starting Prefect server, deployments, a warm worker ({WARM_WORKER}) and webhook "
            f"(logs in {home / 'logs'}) ..."
        )
        stack.start()
        write_private(home / URL_FILE, stack.webhook_url)
        make_private(home, pass_through=options.database == "postgres" and os.geteuid() == 0)
        for line in banner(stack, token_source, database_url, auth):
            say(line)
        while True:
            for child in stack.children():
                if child.process.poll() is not None:
                    say(f"{child.name} exited with {child.process.returncode}; stopping:\n{child.log_tail()}")
                    return 1
            time.sleep(0.5)
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

"""The local Prefect server fanout starts: Prefect's own app under uvicorn, with two additions on SQLite.

    python -m fanout.localstack.prefect_server --fd 3 --nonce N

On SQLite a write that loses a race with another writer answers 503: this server runs such a request
again itself after a short random pause, and a 503 that still comes back carries a `Retry-After`, so
Prefect's clients do not wait their default 2 s. The requests that read before they write take the
write lock at once. On PostgreSQL Prefect's behaviour is kept. The design note
docs/design/local-server.md explains why, with the figures.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import sys
import time
from collections import deque
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar

from fanout.localstack.listener import ASGIApp, Message, Receive, Scope, Send, arguments, serve

SERVER_MODULE = "fanout.localstack.prefect_server"
SERVICE_UNAVAILABLE = 503
RETRY_AFTER = b"retry-after"


RETRY_AFTER_CAP = 30.0
"""The longest wait a 503 asks for, when many came at once (seconds): five retries then span about
as long as Prefect's own backoff (2, 4, 8, 16, 32 s) would."""
RECENT_SECONDS = 5.0
"""How far back 503s count towards the wait."""
REPLAY_PAUSE = 0.025
REPLAY_PAUSE_CAP = 1.0
"""A request answered 503 is run again here after a random pause of up to REPLAY_PAUSE * 2**attempt s (at most the cap)."""


SERVER_DEFAULTS = {
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_FLUSH_INTERVAL": "1",
    "PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS": "PT300S",
}
"""Prefect settings this server starts with unless the environment sets them: the task-run recorder writes
the task-run states of the last second in one transaction (Prefect's default writes each state event in a
transaction of its own), so a task run shows in the UI up to a second later; a run waiting for a worker is
marked Late after five minutes, not 15 s, so a backlog that drains within minutes does not cost the server
a state, its event and its evaluation for every waiting run."""


def with_server_defaults(environ: MutableMapping[str, str]) -> None:
    """Put `SERVER_DEFAULTS` into `environ`, the environment this server is started with, where it sets none
    of them itself (Prefect reads its settings once, when it is imported)."""
    for name, value in SERVER_DEFAULTS.items():
        environ.setdefault(name, value)


WRITE_LOCK_AT_ONCE = (
    ("POST", re.compile(r"^/api/deployments/[^/]+/create_flow_run$")),
    ("PATCH", re.compile(r"^/api/flow_runs/[^/]+/labels$")),
    ("POST", re.compile(r"^/api/v2/concurrency_limits/increment-with-lease$")),
)
"""Requests every run makes that read, then write, in one transaction: creating it from its deployment
(the parameters are validated in between), the worker's labels update, the instance lease."""


class RetryAfterOn503:
    """ASGI middleware: a request Prefect answers 503 is run again here, after a short random pause, up
    to `attempts` times, so a write that lost a race costs milliseconds; a 503 that still comes back
    gets a `Retry-After`, short when 503s are rare and spread over up to `RETRY_AFTER_CAP` seconds when
    they come in numbers. With `write_lock_flag`, it sets that flag for each attempt of a request in
    `WRITE_LOCK_AT_ONCE` (and clears it for any other)."""

    def __init__(
        self,
        app: ASGIApp,
        seconds: float,
        clock: Callable[[], float] = time.monotonic,
        attempts: int = 8,
        write_lock_flag: ContextVar[bool] | None = None,
    ) -> None:
        self.app = app
        self.write_lock_flag = write_lock_flag
        self.attempts = attempts
        self.seconds = seconds
        self.clock = clock
        self.recent: deque[float] = deque()

    def wait(self) -> float:
        """The wait for this 503: `seconds` times one more than the 503s of the last `RECENT_SECONDS`,
        capped, drawn at random below that so the clients that lost one race do not meet again."""
        now = self.clock()
        while self.recent and now - self.recent[0] > RECENT_SECONDS:
            self.recent.popleft()
        self.recent.append(now)
        ceiling = min(RETRY_AFTER_CAP, self.seconds * len(self.recent))
        return self.seconds if ceiling <= self.seconds else random.uniform(self.seconds, ceiling)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await _read_body(receive)
        immediate = self.write_lock_flag is not None and takes_write_lock_at_once(scope)
        for attempt in range(1, self.attempts + 1):
            if self.write_lock_flag is not None:
                self.write_lock_flag.set(immediate)
            last = attempt == self.attempts
            swallowed = False

            async def sending(message: Message, last: bool = last) -> None:
                nonlocal swallowed
                if message["type"] == "http.response.start" and message["status"] == SERVICE_UNAVAILABLE and not last:
                    swallowed = True
                if not swallowed:
                    await self._with_retry_after(send)(message)

            try:
                # Routing rewrites the scope it is given (Starlette's mounts set path and root_path): a copy each.
                await self.app(dict(scope), _replaying(list(body), receive), sending)
            except Exception:
                if not swallowed:  # Starlette re-raises what its handler answered: logged as before
                    raise
            if not swallowed:
                return
            await asyncio.sleep(random.uniform(0, min(REPLAY_PAUSE_CAP, REPLAY_PAUSE * 2**attempt)))

    def _with_retry_after(self, send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == SERVICE_UNAVAILABLE:
                headers = list(message.get("headers", []))
                if not any(name.lower() == RETRY_AFTER for name, _ in headers):
                    message["headers"] = [*headers, (RETRY_AFTER, f"{self.wait():.2f}".encode())]
            await send(message)

        return sending


def takes_write_lock_at_once(scope: Scope) -> bool:
    """Whether the request is one that reads before it writes and loses that race on a busy SQLite
    server: its first write transaction then begins `IMMEDIATE` (src/fanout/core/prefect_adapter.py)."""
    method, path = scope.get("method", ""), scope.get("path", "")
    return any(method == route_method and pattern.match(path) for route_method, pattern in WRITE_LOCK_AT_ONCE)


async def _read_body(receive: Receive) -> list[Message]:
    """The request's body messages, read whole so that the request can be run again
    (Prefect's API takes JSON bodies of kilobytes)."""
    messages: list[Message] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives the request's body again, then waits on the client as before."""

    async def replayed() -> Message:
        return messages.pop(0) if messages else await receive()

    return replayed


def uses_sqlite() -> bool:
    """Whether the server's database is SQLite (Prefect's default), from the settings it will read."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    return url is None or url.get_secret_value().startswith("sqlite")


def app(retry_after: float) -> ASGIApp:
    """Prefect's server app, as `prefect server start` builds it; on SQLite behind the 503 middleware,
    with the write lock taken at once by the requests that need it."""
    from prefect.server.api.server import create_app

    prefect_app: ASGIApp = create_app(final=True)
    if not uses_sqlite():
        return prefect_app
    from fanout.core.prefect_adapter import IMMEDIATE_TRANSACTION, immediate_transactions

    immediate_transactions()
    return RetryAfterOn503(prefect_app, retry_after, write_lock_flag=IMMEDIATE_TRANSACTION)


def server_argv(descriptor: int, nonce: str) -> list[str]:
    """This server, from this interpreter, serving on the listening socket at `descriptor` and
    echoing `nonce` on every answer."""
    return [sys.executable, "-m", SERVER_MODULE, "--fd", str(descriptor), "--nonce", nonce]


def main() -> None:
    args = arguments(__doc__).parse_args()
    host, port = socket_address(args.fd)
    # What `prefect server start --host --port --analytics-off` sets before Prefect reads its settings:
    # the UI finds the API at this address.
    os.environ["PREFECT_SERVER_API_HOST"] = host
    os.environ["PREFECT_SERVER_API_PORT"] = str(port)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    run(args.fd, args.nonce)


def socket_address(descriptor: int) -> tuple[str, int]:
    """The host and port the handed socket is bound to (the descriptor stays open)."""
    import socket

    with socket.socket(fileno=os.dup(descriptor)) as handed:
        host, port = handed.getsockname()[:2]
    return str(host), int(port)


def run(descriptor: int, nonce: str) -> None:
    from prefect.settings import get_current_settings

    from fanout.core.settings import local_stack_settings

    server = get_current_settings().server
    serve(
        app(local_stack_settings().sqlite_retry_after_seconds),  # the server reads only its own concern
        descriptor,
        nonce,
        timeout_keep_alive=server.api.keepalive_timeout,
        log_level=server.logging_level.lower(),
    )


if __name__ == "__main__":
    main()

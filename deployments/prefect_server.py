"""The local Prefect server fanout starts: Prefect's own app, served by uvicorn, with one addition.

    python -m deployments.prefect_server --host 127.0.0.1 --port 4200

On SQLite, Prefect's server answers 503 when a write transaction loses a race
with another writer (`database is locked`, `SQLITE_BUSY_SNAPSHOT`): a flow-run
labels update, for one, reads the run and then writes it, and fails whenever
anything else committed in between, such as the server's own task-run
recorder. Every Prefect client retries a 503, but without a `Retry-After` header
it first sleeps `2 ** attempt` seconds: 2 s for the first retry. Measured on the
local stack, nearly every 5-item run lost 2 s that way, several times what the
whole run took.

The race is over as soon as the other writer commits, so this server says so:
a 503 on a SQLite database carries `Retry-After: <FANOUT_SQLITE_RETRY_AFTER_SECONDS>`
(0.1 s), which Prefect's clients honour. On PostgreSQL a 503 means the database
is unreachable, and Prefect's own backoff is kept. Everything else is exactly
`prefect server start`: the same app factory, the same settings, services included.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SERVICE_UNAVAILABLE = 503
RETRY_AFTER = b"retry-after"


class RetryAfterOn503:
    """ASGI middleware: a 503 without a `Retry-After` header gets one of `seconds`."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.value = f"{seconds:g}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == SERVICE_UNAVAILABLE:
                headers = list(message.get("headers", []))
                if not any(name.lower() == RETRY_AFTER for name, _ in headers):
                    message["headers"] = [*headers, (RETRY_AFTER, self.value)]
            await send(message)

        await self.app(scope, receive, sending)


def uses_sqlite() -> bool:
    """Whether the server's database is SQLite (Prefect's default), from the settings it will read."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    return url is None or url.get_secret_value().startswith("sqlite")


def app(retry_after: float) -> ASGIApp:
    """Prefect's server app, as `prefect server start` builds it, behind the 503 middleware on SQLite."""
    from prefect.server.api.server import create_app

    prefect_app: ASGIApp = create_app(final=True)
    return RetryAfterOn503(prefect_app, retry_after) if uses_sqlite() else prefect_app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # What `prefect server start --host --port --analytics-off` sets before Prefect reads its settings:
    # the UI finds the API at this address.
    os.environ["PREFECT_SERVER_API_HOST"] = args.host
    os.environ["PREFECT_SERVER_API_PORT"] = str(args.port)
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    serve(args.host, args.port)


def serve(host: str, port: int) -> None:
    import uvicorn
    from prefect.settings import get_current_settings

    from flows.settings import get_settings

    server = get_current_settings().server
    uvicorn.run(
        app(get_settings().sqlite_retry_after_seconds),
        host=host,
        port=port,
        timeout_keep_alive=server.api.keepalive_timeout,
        log_level=server.logging_level.lower(),
    )


if __name__ == "__main__":
    main()

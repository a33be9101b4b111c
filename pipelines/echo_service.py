"""A local HTTP service for the I/O pipeline example, its tests and the workloads benchmark.

`GET /items/{id}` waits `--delay` seconds (as a real service would take to
answer) and replies `{"id": ..., "enriched": true}`; `GET /fail/{code}` answers
that status code. It is a plain ASGI app on uvicorn, started as its own process
so its work does not share the caller's event loop:

    python -m pipelines.echo_service --port 8765 --delay 0.05
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def echo_app(delay: float) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app: each reply comes after `delay` seconds."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        status, body = 404, {"detail": "unknown path"}
        if path.startswith("/items/"):
            await asyncio.sleep(delay)
            status, body = 200, {"id": path.removeprefix("/items/"), "enriched": True}
        elif path.startswith("/fail/") and path.removeprefix("/fail/").isdigit():
            status, body = int(path.removeprefix("/fail/")), {"detail": "failing on purpose"}
        elif path == "/health":
            status, body = 200, {"status": "ok"}
        payload = json.dumps(body).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    return app


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1 until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each reply")
    arguments = parser.parse_args(argv)
    uvicorn.run(
        echo_app(arguments.delay),
        host="127.0.0.1",
        port=arguments.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
        timeout_keep_alive=60,
    )


if __name__ == "__main__":
    main()

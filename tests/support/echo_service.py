"""A local HTTP service for the I/O pipeline example, its tests and the workloads benchmark.

`GET /items/{id}` waits `--delay` seconds (as a real service would take to
answer) and replies `{"id": ..., "enriched": true}`; `GET /fail/{code}` answers
that status code; `GET /health` answers 200. Started as its own processes, so
its work does not share the caller's event loop:

    python -m tests.support.echo_service --port 8765 --delay 0.05 --workers 2

Two forms of the same answers:

- `echo_app`, an ASGI app, for tests in-process (`httpx.ASGITransport`);
- `serve`, what `main` runs: a bare `asyncio.Protocol` speaking just enough
  HTTP/1.1 (GET, keep-alive, no bodies) in `--workers` processes sharing one
  port (`SO_REUSEPORT`). The benchmark measures clients against it, so it must
  not be the bottleneck: uvicorn without `httptools` (h11, pure Python) spent
  about 1 ms of CPU per request in one process, a few hundred replies a second
  on these machines; the bare protocol spends a fraction of that, in each worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
REASONS = {200: "OK", 404: "Not Found"}


def reply_for(path: str) -> tuple[int, dict[str, Any], bool]:
    """The status and JSON body for `path`, and whether the reply waits the service's delay first."""
    if path.startswith("/items/"):
        return 200, {"id": path.removeprefix("/items/"), "enriched": True}, True
    if path.startswith("/fail/") and path.removeprefix("/fail/").isdigit():
        return int(path.removeprefix("/fail/")), {"detail": "failing on purpose"}, False
    if path == "/health":
        return 200, {"status": "ok"}, False
    return 404, {"detail": "unknown path"}, False


def echo_app(delay: float) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app: each item's reply comes after `delay` seconds."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        status, body, waits = reply_for(scope["path"])
        if waits:
            await asyncio.sleep(delay)
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


def response_bytes(status: int, body: dict[str, Any]) -> bytes:
    payload = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(payload)}\r\n\r\n"
    )
    return head.encode() + payload


class EchoProtocol(asyncio.Protocol):
    """One keep-alive connection: each request head (GET, no body) answered in turn, after the delay."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.replies: asyncio.Queue[asyncio.Future[bytes] | None] = asyncio.Queue()
        self.writer = asyncio.get_running_loop().create_task(self.write_in_order())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            parts = head.split(b"\r\n", 1)[0].split(b" ")
            path = parts[1].decode("latin-1") if len(parts) > 1 else "/"
            status, body, waits = reply_for(path)
            reply: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
            if waits:
                asyncio.get_running_loop().call_later(self.delay, _resolve, reply, response_bytes(status, body))
            else:
                reply.set_result(response_bytes(status, body))
            self.replies.put_nowait(reply)

    async def write_in_order(self) -> None:
        """HTTP/1.1 pipelining answers in request order, whatever each reply's wait."""
        while (reply := await self.replies.get()) is not None:
            data = await reply
            if self.transport is None or self.transport.is_closing():
                return
            self.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.replies.put_nowait(None)


def _resolve(reply: asyncio.Future[bytes], data: bytes) -> None:
    if not reply.done():
        reply.set_result(data)


def listening_socket(port: int) -> socket.socket:
    """127.0.0.1:`port`, shared by every worker process (`SO_REUSEPORT`: the kernel spreads connections)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    return sock


def serve(port: int, delay: float) -> None:
    """One worker: serve `port` until stopped."""

    async def forever() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: EchoProtocol(delay), sock=listening_socket(port))
        async with server:
            await server.serve_forever()

    asyncio.run(forever())


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1 with `--workers` processes until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--delay", type=float, default=0.05, help="seconds before each item's reply")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port")
    arguments = parser.parse_args(argv)
    workers = [
        multiprocessing.Process(target=serve, args=(arguments.port, arguments.delay), daemon=True)
        for _ in range(arguments.workers - 1)
    ]
    for worker in workers:
        worker.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the workers too when terminated
    try:
        serve(arguments.port, arguments.delay)
    except KeyboardInterrupt:
        pass
    finally:
        for worker in workers:
            worker.terminate()


if __name__ == "__main__":
    main()

"""Serve an ASGI app on a socket the parent bound and handed down, with the parent's nonce on every answer.

    python -m fanout.localstack.listener fanout.api.webhook:app_from_environment --fd 3 --nonce N

The parent binds the port before it starts the child, so no other program can take the port in
between; the nonce in the `Fanout-Nonce` header tells the parent the answer is its child's.
"""

from __future__ import annotations

import argparse
import importlib
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

NONCE_HEADER = "fanout-nonce"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class WithNonce:
    """ASGI middleware: every HTTP answer carries the `Fanout-Nonce` header."""

    def __init__(self, app: ASGIApp, nonce: str) -> None:
        self.app = app
        self.header = (NONCE_HEADER.encode(), nonce.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), self.header]
            await send(message)

        await self.app(scope, receive, sending)


def handed_socket(descriptor: int) -> socket.socket:
    """The listening socket at `descriptor`, kept from whatever this process starts in turn."""
    listener = socket.socket(fileno=descriptor)
    listener.set_inheritable(False)
    return listener


def serve(app: ASGIApp, descriptor: int, nonce: str, **options: Any) -> None:
    """Run `app` under uvicorn on the handed socket until SIGTERM or SIGINT; `options` go to uvicorn's Config."""
    import uvicorn

    listener = handed_socket(descriptor)
    host, port = listener.getsockname()[:2]
    config = uvicorn.Config(WithNonce(app, nonce), host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[listener])


def load_factory(reference: str) -> ASGIApp:
    """The app a `module:function` factory builds."""
    module_name, _, function = reference.partition(":")
    factory: Callable[[], ASGIApp] = getattr(importlib.import_module(module_name), function)
    return factory()


def arguments(description: str | None = None) -> argparse.ArgumentParser:
    """The `--fd` and `--nonce` options every handed-socket child takes."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fd", type=int, required=True, help="The listening socket the parent bound.")
    parser.add_argument("--nonce", required=True, help="Echoed in the Fanout-Nonce header of every answer.")
    return parser


def main() -> None:
    parser = arguments(__doc__)
    parser.add_argument("factory", help="`module:function` that builds the ASGI app.")
    args = parser.parse_args()
    serve(load_factory(args.factory), args.fd, args.nonce, access_log=False)


if __name__ == "__main__":
    main()

"""A stand-in for a frozen server (a process stopped with SIGSTOP): connections are taken, nothing answers.

The kernel completes TCP handshakes into a listening socket's backlog whether or
not its process runs, so a socket that listens and never accepts looks, to a
client, exactly like a server that was frozen mid-flight.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def frozen_server() -> Iterator[str]:
    """The base URL (`http://127.0.0.1:<port>`) of a listening socket that never answers; closed at the end."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()

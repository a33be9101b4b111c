"""The local PostgreSQL's port: a free one, tried again when another program takes it first
(src/fanout/localstack/postgres.py)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from fanout.localstack.postgres import PORT_ATTEMPTS, start_on_a_port
from fanout.localstack.processes import PortTaken, free_port


class BindingServer:
    """Stands in for PostgreSQL's start: it binds the port it is given itself, and fails on a clash."""

    def __init__(self) -> None:
        self.tried: list[int] = []
        self.socket: socket.socket | None = None

    def __call__(self, port: int) -> bool:
        self.tried.append(port)
        candidate = socket.socket()
        try:
            candidate.bind(("127.0.0.1", port))
        except OSError:
            candidate.close()
            return False
        self.socket = candidate
        return True


@pytest.fixture
def server() -> Iterator[BindingServer]:
    started = BindingServer()
    yield started
    if started.socket is not None:
        started.socket.close()


@pytest.fixture
def strangers() -> Iterator[list[socket.socket]]:
    """Sockets another program holds; closed at the end."""
    held: list[socket.socket] = []
    yield held
    for stranger in held:
        stranger.close()


def taken_first(strangers: list[socket.socket], times: int) -> Callable[[], int]:
    """A port chooser whose first `times` free ports another program binds right after the choice."""

    def choose() -> int:
        port = free_port()
        if len(strangers) < times:
            stranger = socket.socket()
            stranger.bind(("127.0.0.1", port))
            strangers.append(stranger)
        return port

    return choose


def test_a_free_port_taken_before_the_server_binds_it_is_replaced_by_another(
    server: BindingServer, strangers: list[socket.socket]
) -> None:
    """Another program takes the chosen port first: the server starts on the next free port."""
    port = start_on_a_port(server, 0, choose=taken_first(strangers, 1))
    assert len(server.tried) == 2 and port == server.tried[1]
    assert server.socket is not None and server.socket.getsockname()[1] == port
    assert port != strangers[0].getsockname()[1]


def test_a_port_asked_for_that_is_taken_is_one_line_naming_it(
    server: BindingServer, strangers: list[socket.socket]
) -> None:
    """An asked port is not swapped for another: `PortTaken` in one line, after one try."""
    asked = taken_first(strangers, 1)()
    with pytest.raises(PortTaken, match=f"could not listen on port {asked} on 127.0.0.1") as refused:
        start_on_a_port(server, asked)
    assert server.tried == [asked] and "\n" not in str(refused.value)


def test_a_server_that_loses_every_race_stops_with_one_line(
    server: BindingServer, strangers: list[socket.socket]
) -> None:
    """Each free port taken first: after `PORT_ATTEMPTS` tries, `PortTaken` in one line."""
    with pytest.raises(PortTaken, match=f"each of {PORT_ATTEMPTS} free ports taken") as refused:
        start_on_a_port(server, 0, choose=taken_first(strangers, PORT_ATTEMPTS))
    assert len(server.tried) == PORT_ATTEMPTS and "\n" not in str(refused.value)


def test_a_free_port_is_used_at_once(server: BindingServer) -> None:
    """Nobody in the way: the first free port is the server's."""
    port = start_on_a_port(server, 0)
    assert server.tried == [port]

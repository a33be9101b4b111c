"""`fanout up` keeps its children up and its ports the same (src/fanout/localstack/up.py)."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fanout.localstack.processes import PortTaken
from fanout.localstack.up import MAX_FAILURES, STABLE_SECONDS, Supervisor, listen_for, stack_ports


@dataclass
class FakeProcess:
    returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode


@dataclass
class FakeChild:
    name: str
    process: FakeProcess = field(default_factory=FakeProcess)

    @property
    def log_path(self) -> Path:
        return Path(f"logs/{self.name}.log")


@dataclass
class FakeStack:
    """Children that die when told; `restart` brings one back, or fails `failing` more times."""

    names: tuple[str, ...] = ("prefect-server", "worker-1", "webhook")
    failing: int = 0
    restarts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.live: list[Any] = [FakeChild(name) for name in self.names]

    def children(self) -> list[Any]:
        return list(self.live)

    def restart(self, child: Any) -> Any:
        self.restarts.append(child.name)
        if self.failing:
            self.failing -= 1
            raise RuntimeError(f"{child.name} exited with 1:\nboom")
        self.live[self.live.index(child)] = FakeChild(child.name)
        return child


class Clock:
    """Time that moves only when slept through."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def supervisor(stack: FakeStack, clock: Clock, said: list[str]) -> Supervisor:
    return Supervisor(stack, said.append, sleep=clock.sleep, clock=clock)  # type: ignore[arg-type]


def test_a_child_that_dies_is_restarted_after_a_backoff_and_the_restart_is_logged() -> None:
    """The worker exits: after 1 s it is started again, and both moves are said."""
    stack, clock, said = FakeStack(), Clock(), list[str]()
    watcher = supervisor(stack, clock, said)
    stack.live[1].process.returncode = -9
    assert watcher.restart(stack.live[1]) is True
    assert stack.restarts == ["worker-1"] and clock.slept == [1.0]
    assert said == ["worker-1 exited with -9; restarting it in 1s (attempt 1)", "worker-1 restarted"]


def test_a_child_that_keeps_failing_at_start_stops_the_stack_after_backing_off() -> None:
    """A webhook that never starts again is tried with growing pauses, then the supervisor gives up (1)."""
    stack, clock, said = FakeStack(failing=100), Clock(), list[str]()
    watcher = supervisor(stack, clock, said)
    stack.live[2].process.returncode = 1
    assert watcher.watch() == 1
    assert stack.restarts == ["webhook"] * MAX_FAILURES
    assert [pause for pause in clock.slept if pause >= 1] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert said[-1] == f"webhook failed {MAX_FAILURES} times in a row; stopping (log: logs/webhook.log)"


def test_a_child_that_stayed_up_starts_its_failure_count_again() -> None:
    """Dying after running a while counts as a first failure again (backoff back to 1 s)."""
    stack, clock, said = FakeStack(), Clock(), list[str]()
    watcher = supervisor(stack, clock, said)
    for _ in range(3):
        stack.live[0].process.returncode = 1
        watcher.restart(stack.live[0])
    clock.now += STABLE_SECONDS
    stack.live[0].process.returncode = 1
    watcher.restart(stack.live[0])
    assert clock.slept == [1.0, 2.0, 4.0, 1.0]


def test_a_port_someone_listens_on_is_a_one_line_error_naming_the_option() -> None:
    """Another program's listening socket: PortTaken says which port and which option moves it."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        with pytest.raises(PortTaken, match=f"port {port} on 127.0.0.1 is taken .*--webhook-port N") as refused:
            listen_for(port, "--webhook-port")
    assert "\n" not in str(refused.value)


def test_a_port_left_in_time_wait_by_the_last_run_is_used_again() -> None:
    """The stack's own old connections in TIME_WAIT do not move it to another port."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    served, _ = listener.accept()
    served.close()  # the server side closes first: its end of the connection sits in TIME_WAIT
    listener.close()
    client.close()
    with listen_for(port, "--prefect-port") as again:
        assert again.getsockname()[1] == port


def test_ports_come_from_the_home_unless_asked(tmp_path: Path) -> None:
    """Not asked: the ports recorded last time; asked: those."""
    with socket.socket() as one, socket.socket() as two:
        one.bind(("127.0.0.1", 0))
        two.bind(("127.0.0.1", 0))
        first, second = one.getsockname()[1], two.getsockname()[1]
    (tmp_path / "ports.json").write_text(json.dumps({"prefect": first, "webhook": second}))
    assert stack_ports(tmp_path, None, None) == (first, second)
    assert stack_ports(tmp_path, second, first) == (second, first)

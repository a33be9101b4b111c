"""Warm workers kept between the e2e tests that only need "a worker with this environment".

Starting a warm worker (a Prefect worker, its forkserver and a spare, each importing Prefect) costs a
test seconds of CPU. A worker a test is done with is frozen (SIGSTOP to its process group) instead of
stopped, and thawed for the next test that asks for a worker with exactly the same environment. A
frozen worker polls nothing, hears no event and stands by for nobody, so it can never take another
test's run, nor resume a run a fault test killed; thawed, it catches up as a worker does after a
pause. A test whose environment differs gets a worker of its own. A worker whose test failed, or that
died, is stopped rather than kept.
"""

from __future__ import annotations

import signal
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from fanout.localstack.processes import Child, signal_group
from fanout.localstack.stack import LocalStack

Key = frozenset[tuple[str, str]]


@dataclass
class WorkerPool:
    """Frozen warm workers of one stack, one per environment (the FANOUT_* overrides they were started with)."""

    stack: LocalStack
    frozen: dict[Key, Child] = field(default_factory=dict)

    def take(self, env: Mapping[str, str]) -> Child:
        """A running worker whose flow runs see exactly `env`: a frozen one thawed, else a new one."""
        child = self.frozen.pop(frozenset(env.items()), None)
        if child is not None and child.process.poll() is None:
            signal_group(child.process.pid, signal.SIGCONT)
            self.stack.workers.append(child)
            return child
        if child is not None:
            child.kill()
        return self.stack.start_worker(name=f"shared-worker-{uuid.uuid4().hex[:8]}", env=env)

    def give_back(self, child: Child, env: Mapping[str, str], keep: bool) -> None:
        """Freeze the worker for the next test with the same `env`; stop it instead unless `keep` and it
        is still running. It leaves the stack's list of workers, so no test stops or counts it."""
        if child in self.stack.workers:
            self.stack.workers.remove(child)
        if not keep or child.process.poll() is not None:
            child.stop()
            return
        signal_group(child.process.pid, signal.SIGSTOP)
        previous = self.frozen.pop(frozenset(env.items()), None)
        self.frozen[frozenset(env.items())] = child
        if previous is not None:
            self.close_one(previous)

    def close(self) -> None:
        """Stop every frozen worker (thawed first, so it can exit as asked)."""
        while self.frozen:
            self.close_one(self.frozen.popitem()[1])

    @staticmethod
    def close_one(child: Child) -> None:
        signal_group(child.process.pid, signal.SIGCONT)
        child.stop()

"""Pre-started interpreters for flow runs: a `multiprocessing` forkserver that imported Prefect and the flow.

The forkserver pays the imports once, when the worker starts; each run is then a `fork()` of it, a
process of its own. It starts with the worker's environment and `sys.path`; a run's own job variables
are applied in the child (src/fanout/worker/warm_child.py). docs/design/warm-worker.md explains why.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Mapping
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Protocol

from prefect.client.schemas.objects import FlowRun

from fanout.worker.warm_spare import DeploymentSource, Handover, Spare

CHILD_MODULE = "fanout.worker.warm_child"
"""Imports Prefect's engine; always preloaded."""
DEFAULT_PRELOAD = ("fanout.seed",)
"""The flow and what it imports; a deployment of another flow still runs, it just imports its module per run."""
RUN_TIME_MODULES = (
    "prefect.task_engine",
    "prefect._internal.observers",
    "prefect._internal._observation_delivery",
    "anyio._backends._asyncio",
    "anyio.streams.memory",
    "anyio.streams.tls",
    "encodings.idna",
)
"""Modules Prefect imports only once a flow runs, imported here once for every run. Some are
private and may not exist in every Prefect release; the forkserver skips a preload it cannot import."""
WARMING_MODULE = "fanout.worker.warm_preload"
"""Builds the models of every module imported before it: always preloaded last."""


def preload_modules(processor: str | None = None) -> list[str]:
    """Modules the forkserver imports up front: the child entry, the flow, the item processor's module,
    and last the module that builds their models' schemas."""
    modules = [CHILD_MODULE, *DEFAULT_PRELOAD, *RUN_TIME_MODULES]
    if processor:
        module = processor.split(":", 1)[0]
        if module not in modules:
            modules.append(module)
    return [*modules, WARMING_MODULE]


class WarmProcesses:
    """Fork flow-run processes from one pre-imported forkserver, keeping one spare ready when `spare` is on."""

    def __init__(self, preload: list[str], spare: bool = True) -> None:
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(preload)
        self._keep_spare = spare
        self._spare: Spare | None = None
        self._lock = threading.Lock()
        self._stopped = False

    @property
    def spare(self) -> BaseProcess | None:
        """The spare process waiting for the next run, if there is one."""
        spare = self._spare
        return spare.process if spare is not None else None

    def warm_up(self) -> None:
        """Start the forkserver now (it imports the preload), not at the first run, and the first spare."""
        multiprocessing.forkserver.ensure_running()
        self.replenish()

    def start(
        self,
        flow_run: FlowRun,
        env: Mapping[str, str],
        working_dir: Path | None,
        deployment: DeploymentSource | None = None,
        related: Mapping[str, str] | None = None,
    ) -> BaseProcess:
        """A started process running `flow_run`, the worker's copy of it: the spare, else a new fork.
        `related`: what the run's events relate to, as the worker read it (`prefect_adapter.related_objects`).

        Call `replenish` afterwards for the next run's spare.
        """
        from fanout.worker.warm_child import execute_forked

        folder = str(working_dir) if working_dir else None
        handover: Handover = (flow_run.model_dump_json(), dict(env), folder, deployment, dict(related or {}))
        with self._lock:
            spare, self._spare = self._spare, None
        if spare is not None and spare.hand_over(handover):
            return spare.process
        if spare is not None:
            spare.retire()
        process = self._context.Process(
            target=execute_forked, args=handover, name=f"flow-run-{flow_run.id}", daemon=False
        )
        process.start()
        return process

    def replenish(self) -> None:
        """Fork a new spare if there is none (and spares are on); it prepares itself while no run waits."""
        from fanout.worker.warm_spare import serve

        with self._lock:
            if not self._keep_spare or self._stopped or self._spare is not None:
                return
            receiver, sender = self._context.Pipe(duplex=False)
            process = self._context.Process(target=serve, args=(receiver,), name="flow-run-spare", daemon=False)
            process.start()
            receiver.close()  # the spare holds the only reading end, the worker the only writing end
            self._spare = Spare(process, sender)

    def stop(self) -> None:
        """Retire the spare (it exits on end-of-file); no new one is started. Runs in progress are not touched."""
        with self._lock:
            self._stopped = True
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.retire()


def kill(pid: int) -> bool:
    """SIGKILL one flow-run process; False when it was already gone."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


class FlowRunProcess(Protocol):
    """What the worker needs of a flow-run process, warm or not: its pid, a wait, its exit status."""

    @property
    def pid(self) -> int | None: ...
    def join(self) -> None: ...
    @property
    def exitcode(self) -> int | None: ...


class CommandProcess:
    """A flow run started with its deployment's own `command` job variable, in a new interpreter, as Prefect's
    `process` worker starts such a run: the worker's environment plus the run's, in the run's folder."""

    def __init__(self, command: str, env: Mapping[str, str], working_dir: Path | None) -> None:
        self._process = subprocess.Popen(
            shlex.split(command), env={**os.environ, **env}, cwd=working_dir, start_new_session=True
        )
        self.pid: int = self._process.pid

    def join(self) -> None:
        """Wait until the run's process ended."""
        self._process.wait()

    @property
    def exitcode(self) -> int | None:
        """Its exit status, negative for a signal (as `multiprocessing` reports it)."""
        return self._process.returncode

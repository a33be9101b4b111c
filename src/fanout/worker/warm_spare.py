"""A spare flow-run process: forked and made ready before its run exists, then handed the run.

It does what no run decides (the fork, an API client, Prefect's version check, the log and events
services) while no run waits, then blocks on a pipe until `run()` sends it a flow run, which it runs as
a freshly forked process would. It exits when the pipe closes, so it never outlives its worker. A run
that changes a Prefect setting gets none of what was prepared under the worker's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from contextlib import ExitStack
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, NamedTuple

from prefect.utilities.asyncutils import run_coro_as_sync

from fanout.core.prefect_adapter import (
    OpenSuspensionObserver,
    forget_default_result_storage,
    read_default_result_storage_ahead,
    skip_server_version_checks,
)

logger = logging.getLogger(__name__)

OBSERVER_OPEN_SECONDS = 5.0
"""How long a spare waits for its suspension observer's subscription before leaving the run to open its own."""


class DeploymentSource(NamedTuple):
    """What loading a deployment's flow needs of the deployment (the worker read it when it submitted the run)."""

    entrypoint: str | None
    pull_steps: list[dict[str, Any]] | None


STORAGE_READ_FRESH_SECONDS = 10.0
"""How long the server's default result storage, as the spare read it, stands for the run's own read."""

Handover = tuple[str, dict[str, str], str | None, DeploymentSource | None, dict[str, str]]
"""What a spare receives: the flow run (JSON, as the worker read it), the run's environment, its folder,
its deployment's entrypoint and pull steps, and what its events relate to (JSON by kind)."""


def serve(receiver: Connection) -> None:
    """The spare's whole life: prepare, wait for a run (or the worker's end), run it.

    `multiprocessing` calls this in the process the forkserver forked.
    """
    from fanout.worker.warm_child import execute

    # A Ctrl-C in the worker's terminal reaches its whole process group: an idle spare leaves it to the worker,
    # whose stop ends the spare with end-of-file, instead of dying with a traceback. Its run gets Ctrl-C back.
    interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
    skip_server_version_checks()  # the worker checked the server's version
    prepared = prepare()
    prepared_at = time.monotonic()
    try:
        flow_run_json, env, working_dir, deployment, related = receiver.recv()
    except (EOFError, OSError):
        os._exit(0)  # no run will come: the worker stopped, died, or retired this spare
    receiver.close()
    if time.monotonic() - prepared_at > STORAGE_READ_FRESH_SECONDS:
        forget_default_result_storage()  # read long ago: the run reads it again
    signal.signal(signal.SIGINT, interrupt)
    execute(flow_run_json, env, working_dir, deployment, related, prepared=prepared)


def prepare() -> ExitStack:
    """Do now what every run does first and does not depend on the run; the contexts to run in.

    The API client is the one the run will use (the engine takes the client of
    the current `SyncClientContext`). Starting the events service opens its
    connection; the log service creates its client. When the client supports CSRF, the first change request fetches the
    server's CSRF setting once (here, a one-row read by POST), which the engine's
    first update would otherwise wait for. Prefect's event loop for sync callers (a
    task's state, a result's write) is started. The server's default result storage,
    which the engine reads before the run's first task, is read here; a run that
    comes more than `STORAGE_READ_FRESH_SECONDS` later reads it again. The observer of the run's suspension,
    which Prefect's engine opens and waits for before it proposes Running, is
    opened here too (src/fanout/core/prefect_adapter.py). Each is best effort:
    whatever fails here, the run does as it would have.
    """
    from prefect.context import SyncClientContext
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import get_current_settings

    stack = ExitStack()
    try:
        clients = stack.enter_context(SyncClientContext.get_or_create())
        if get_current_settings().client.csrf_support_enabled:
            clients.client.read_flow_runs(limit=1)
        read_default_result_storage_ahead(clients.client)
        stack.callback(forget_default_result_storage)
        APILogWorker.instance()
        EventsWorker.instance()
        run_coro_as_sync(asyncio.sleep(0))  # starts Prefect's loop for sync callers, which every run uses
        observer = OpenSuspensionObserver()
        if observer.open(OBSERVER_OPEN_SECONDS):
            stack.callback(observer.install())
    except Exception as error:  # noqa: BLE001 - the run prepares what is missing itself
        logger.debug("A spare flow-run process could not prepare everything: %s", error)
    return stack


def discard(prepared: ExitStack) -> None:
    """Close what `prepare` made, so that a run under other Prefect settings makes its own."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    prepared.close()
    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)


class Spare:
    """The worker's side of one spare process: the process and the pipe's writing end."""

    def __init__(self, process: BaseProcess, sender: Connection) -> None:
        self.process = process
        self._sender = sender

    def hand_over(self, handover: Handover) -> bool:
        """Send the spare its run; False when it is gone (the caller forks a process instead)."""
        try:
            if not self.process.is_alive():
                return False
            self._sender.send(handover)
            return True
        except OSError:
            return False
        finally:
            self._sender.close()

    def retire(self, timeout: float = 2.0) -> None:
        """End an unused spare: it reads end-of-file and exits; killed if it has not within `timeout`."""
        self._sender.close()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)

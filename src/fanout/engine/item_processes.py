"""A sync processor's items in worker processes on the run's host: `FANOUT_TASK_RUNNER=process`.

Threads share one interpreter lock, so a processor that computes in Python gets
one core however many threads run it. With this runner each task-run thread of
the flow process owns one worker process (one per core by default) and sends it
its batch of items in one message; the worker runs them through the processor
(attempts under the run's retry policy, each with `current_item()` set) and
sends each outcome back as its item finishes. The task-run thread checkpoints and
counts it as it would an item run on the thread itself
(src/fanout/engine/item_path.py), so checkpoints, progress and resume do not
change. Log lines written in a worker travel back with their records and are
written by the task run, correlation id included.

Workers are forked from the flow process (a fresh interpreter where `fork` does
not exist), so they start in milliseconds with what the flow had imported. They
use nothing of Prefect's: its background threads did not come with them.

A worker that dies (killed, out of memory, a crash in native code) is replaced.
The item it was running counts a failed attempt, `ItemProcessDied`, retried as a
transient error; the rest of its batch goes to the new worker.

Every worker loads the processor before any item runs: a processor that cannot
be pickled, or whose module does not import in a worker, is refused with why.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import queue
import signal
import sys
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass
from logging.handlers import QueueHandler
from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any, Self

from fanout.core.errors import CheckpointNotWritten, ItemProcessDied, ProcessorNotFound
from fanout.core.item_context import ItemContext
from fanout.core.outcome import ItemOutcome, describe
from fanout.engine.attempts import attempt_item
from fanout.engine.concurrency import ItemSlot
from fanout.engine.item_logging import TASK_RUN_LOGGER, log_failed_attempt
from fanout.engine.processor import Processor, load_processor
from fanout.engine.processor_kind import processor_kind
from fanout.engine.progress import ItemTally
from fanout.engine.retry_policy import RetryPolicy

if TYPE_CHECKING:
    from fanout.engine.item_path import ItemRun

START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
READY_SECONDS = 120.0
"""Longest a new worker may take to load the processor (a fresh interpreter imports it all)."""
STOP_SECONDS = 5.0
ITEM_LOGGER = "fanout.items"
"""The logger `item_logger()` falls back to outside a run, as it is in a worker: its lines go to the task run's log."""

ProcessorRef = str | Processor
"""A processor by name (`package.module:function`, imported in each worker) or the function itself (pickled)."""


class WorkerDied(Exception):
    """A worker's pipe closed: the process is gone (the reason says how it ended)."""


@dataclass(frozen=True)
class Order:
    """A batch for one worker: each item's key, its value for the processor, and attempts already made."""

    instance_id: str
    retry: RetryPolicy
    items: list[tuple[str, Any, int]]
    stage: str | None = None
    """The stage as ids name it (`ItemRun.stage`): part of each item's correlation and idempotency id."""


def worker_processes() -> int:
    """One worker per core this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def shippable(processor: ProcessorRef) -> str | bytes:
    """What a worker is sent to find the processor: its name, or the function pickled.

    A function that cannot be pickled (a lambda, a closure, an object holding a
    lock) is refused here, in the flow, before any worker starts.
    """
    if isinstance(processor, str):
        return processor
    try:
        return pickle.dumps(processor)
    except Exception as error:  # pickle raises several kinds
        raise ProcessorNotFound(
            f"processor {processor!r} cannot be pickled for worker processes ({describe(error)}); "
            "define it at module level, or run it on threads"
        ) from error


class WorkerProcess:
    """One worker process and the flow's end of its pipe."""

    def __init__(self, context: BaseContext, processor: str | bytes, siblings: Iterable[WorkerProcess] = ()) -> None:
        self._pipe, child_end = multiprocessing.Pipe()
        # A forked worker inherits the flow's end of its own pipe and of its siblings' pipes; it closes
        # them, or no worker would see the flow's end close when the flow dies, and none would exit.
        flow_ends = [self._pipe, *(sibling._pipe for sibling in siblings)]
        self._process = context.Process(  # type: ignore[attr-defined]
            target=serve,
            args=(child_end, processor, flow_ends if context.get_start_method() == "fork" else []),
            name="fanout-item-worker",
            daemon=True,
        )
        self._process.start()
        child_end.close()

    def wait_ready(self, timeout: float = READY_SECONDS) -> None:
        """Return once the worker has loaded the processor; `ProcessorNotFound` saying why it could not."""
        if not self._pipe.poll(timeout):
            raise ProcessorNotFound(f"a worker process did not load the processor within {timeout:.0f} s")
        try:
            kind, detail = self._pipe.recv()
        except EOFError:
            raise ProcessorNotFound(f"a worker process died loading the processor ({self.end()})") from None
        if kind != "ready":
            raise ProcessorNotFound(f"the processor cannot run in a worker process: {detail}")

    def send(self, order: Order | None) -> None:
        try:
            self._pipe.send(order)
        except (BrokenPipeError, ConnectionResetError, EOFError):
            raise WorkerDied(self.end()) from None

    def receive(self) -> ItemOutcome:
        """The next item outcome; log lines that come first are written on the way."""
        while True:
            try:
                kind, payload = self._pipe.recv()
            except (EOFError, ConnectionResetError):
                raise WorkerDied(self.end()) from None
            if kind == "outcome":
                return payload  # type: ignore[no-any-return]
            write_log_line(payload)

    def end(self) -> str:
        """How the process ended, once it has: `killed by SIGKILL`, `exit code 1`."""
        self._process.join(STOP_SECONDS)
        code = self._process.exitcode
        if code is None:
            return "still running"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"

    def stop(self, busy: bool = False) -> None:
        """Ask the worker to finish, and kill it if it does not within a few seconds (at once when `busy`)."""
        with suppress(OSError):
            self._pipe.send(None)
        self._process.join(0 if busy else STOP_SECONDS)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._pipe.close()


def write_log_line(record: logging.LogRecord) -> None:
    """Write a worker's log record here: an item's lines to the task run's log, others to their own logger."""
    name = TASK_RUN_LOGGER if record.name == ITEM_LOGGER else record.name
    logging.getLogger(name).handle(record)


class ItemProcesses:
    """A run's worker processes: one per task-run thread, checked out by the thread for each batch."""

    def __init__(self, processor: ProcessorRef, size: int, start_method: str = START_METHOD) -> None:
        self._processor = shippable(processor)
        self._size = size
        self._context = multiprocessing.get_context(start_method)
        self._idle: queue.SimpleQueue[WorkerProcess] = queue.SimpleQueue()
        self._all: set[WorkerProcess] = set()
        self._lock = threading.Lock()

    def __enter__(self) -> Self:
        try:
            for _ in range(self._size):
                self._idle.put(self._start())
            for worker in list(self._all):
                worker.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            workers, self._all = list(self._all), set()
        for worker in workers:
            worker.stop()

    def _start(self) -> WorkerProcess:
        # One fork at a time: a worker forked while another's pipe is being set up would hold that
        # pipe's worker end open, and the flow would never see the other worker die.
        with self._lock:
            worker = WorkerProcess(self._context, self._processor, self._all)
            self._all.add(worker)
        return worker

    def _replace(self, worker: WorkerProcess) -> WorkerProcess:
        """A new worker in place of one that died or was left mid-batch."""
        with self._lock:
            self._all.discard(worker)
        worker.stop(busy=True)
        fresh = self._start()
        fresh.wait_ready()
        return fresh

    def carry(
        self,
        items: list[str],
        done: Mapping[str, Any],
        run: ItemRun,
        record: Callable[[str, Any], None],
        tally: ItemTally,
        slot: ItemSlot,
    ) -> list[ItemOutcome]:
        """A task run's items in one worker: those in `done` from their checkpoints, the rest sent to
        the worker, each checkpointed with `record` and counted as its outcome arrives; in item order.

        With a global concurrency limit the worker gets one item at a time, each under the
        thread's slot; without one, the whole batch in one message.
        """
        fresh: dict[str, ItemOutcome] = {}

        def finish_item(outcome: ItemOutcome) -> None:
            if outcome.ok:
                try:
                    record(outcome.item, outcome.value)
                except CheckpointNotWritten as error:
                    outcome.error, outcome.value = describe(error), None
            tally.count(ok=outcome.ok)
            fresh[outcome.item] = outcome

        waiting = deque((item, 0) for item in items if item not in done)
        worker = self._idle.get()
        clean = False
        try:
            while waiting:
                batch = [waiting.popleft()] if slot.limit_name else [waiting.popleft() for _ in range(len(waiting))]
                slot.before_item()
                worker = self._send_batch(worker, batch, run, waiting, finish_item)
            clean = True
        finally:
            self._idle.put(worker if clean else self._replace(worker))
        return [
            ItemOutcome(item=item, value=done[item], cached=True) if item in done else fresh[item] for item in items
        ]

    def _send_batch(
        self,
        worker: WorkerProcess,
        batch: list[tuple[str, int]],
        run: ItemRun,
        waiting: deque[tuple[str, int]],
        finish_item: Callable[[ItemOutcome], None],
    ) -> WorkerProcess:
        """Send `batch` and finish its items with their outcomes; on the worker's death, put what did not finish back
        in front of `waiting` and return its replacement."""
        order = Order(
            run.instance_id, run.retry, [(item, run.values.of(item), made) for item, made in batch], run.stage
        )
        try:
            worker.send(order)
        except WorkerDied:  # died idle: no item was running
            waiting.extendleft(reversed(batch))
            return self._replace(worker)
        for position, (item, made) in enumerate(batch):
            try:
                outcome = worker.receive()
            except WorkerDied as death:
                waiting.extendleft(reversed(batch[position + 1 :]))
                self._died_running(item, made + 1, str(death), run, waiting, finish_item)
                return self._replace(worker)
            finish_item(outcome)
        return worker

    @staticmethod
    def _died_running(
        item: str,
        attempts: int,
        end: str,
        run: ItemRun,
        waiting: deque[tuple[str, int]],
        finish_item: Callable[[ItemOutcome], None],
    ) -> None:
        """The item a dead worker was running: tried again in front of the rest, or failed when out of retries."""
        error = ItemProcessDied(f"its worker process died ({end}) while running it")
        retrying = run.retry.will_retry(error, attempts)
        log_failed_attempt(ItemContext(run.instance_id, item, attempts, run.stage), attempts, error, retrying=retrying)
        if retrying:
            waiting.appendleft((item, attempts))
        else:
            finish_item(ItemOutcome(item=item, error=describe(error), attempts=attempts))


_processes: ContextVar[ItemProcesses | None] = ContextVar("fanout_item_processes", default=None)


def current_processes() -> ItemProcesses | None:
    """The worker processes this run's task runs send items to, or None (items run on the thread)."""
    return _processes.get()


@contextmanager
def running_in_processes(processes: ItemProcesses | None) -> Iterator[None]:
    """Task runs submitted inside send their items to `processes` (None: they run them themselves)."""
    if processes is None:
        yield
        return
    with processes:
        token = _processes.set(processes)
        try:
            yield
        finally:
            _processes.reset(token)


# What runs in a worker process.


class _Outbox:
    """The worker's end of the pipe, shared by its main loop and any thread that logs."""

    def __init__(self, pipe: multiprocessing.connection.Connection) -> None:
        self._pipe = pipe
        self._lock = threading.Lock()

    def send(self, kind: str, payload: Any) -> None:
        with self._lock:
            self._pipe.send((kind, payload))

    def put_nowait(self, record: logging.LogRecord) -> None:
        """`QueueHandler`'s queue: a log record, its message already formatted."""
        self.send("log", record)


def serve(
    pipe: multiprocessing.connection.Connection,
    processor: str | bytes,
    flow_ends: list[multiprocessing.connection.Connection],
) -> None:
    """A worker's life: load the processor, then run each batch it is sent until told to stop or orphaned.

    `flow_ends`: the flow's ends of worker pipes that a forked worker inherited, closed here.
    The worker leaves with `os._exit`: exit hooks it inherited from the flow (Prefect's
    services drain their queues into threads that did not come with the fork) would wait forever.
    """
    code = 1
    try:
        for end in flow_ends:
            end.close()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the flow's to handle; it stops the workers
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        outbox = _Outbox(pipe)
        # Every line goes to the flow; `item_logger()` lines at the level the task run's logger has there.
        logging.getLogger().handlers = [QueueHandler(outbox)]  # type: ignore[arg-type]
        logging.getLogger(ITEM_LOGGER).setLevel(logging.getLogger(TASK_RUN_LOGGER).getEffectiveLevel())
        # A fresh context: nothing of the flow's run context (Prefect's loggers, clients) carries over.
        contextvars.Context().run(_serve, pipe, outbox, processor)
        code = 0
    except BaseException:  # noqa: BLE001 - its last words go to stderr; the flow sees it die either way
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with suppress(Exception):
                stream.flush()
        os._exit(code)


def _serve(pipe: multiprocessing.connection.Connection, outbox: _Outbox, processor: str | bytes) -> None:
    try:
        function = load_processor(processor) if isinstance(processor, str) else pickle.loads(processor)
        if processor_kind(function) != "sync":
            raise ProcessorNotFound("an async processor runs on an event loop: use FANOUT_TASK_RUNNER=thread")
    except Exception as error:  # noqa: BLE001 - sent to the flow, which refuses the run with it
        outbox.send("refused", describe(error))
        return
    outbox.send("ready", None)
    while True:
        try:
            order = pipe.recv()
        except EOFError:  # the flow process is gone
            return
        if order is None:
            return
        for item, value, made in order.items:
            outcome = attempt_item(function, item, value, order.retry, order.instance_id, made, order.stage)
            if not _report(outbox, outcome):
                return


def _report(outbox: _Outbox, outcome: ItemOutcome) -> bool:
    """Send an outcome to the flow; False when the flow is gone. A result that cannot travel fails its item."""
    try:
        outbox.send("outcome", outcome)
    except (BrokenPipeError, ConnectionResetError):
        return False
    except Exception as error:  # noqa: BLE001 - pickling raises several kinds
        failed = dataclasses.replace(outcome, value=None, error=f"result cannot leave the worker: {describe(error)}")
        outbox.send("outcome", failed)
    return True

"""What a run on threads does once its items prove CPU-bound: the rest in worker processes, or a core's worth of threads.

Threads share one interpreter lock, so items that compute in Python get one core however
many threads run them, and more threads only hand the lock to each other. When the first
batches keep the flow process computing (running or waiting for a CPU at least
`CPU_BOUND_SHARE` of the time: the items are not waiting on I/O), the rest of the run, when it is long enough to be worth a worker
process (items of at least `MIN_ITEM_SECONDS`, `MIN_REST_SECONDS` of them in all), goes to
worker processes on the run's host, one per core, as `FANOUT_TASK_RUNNER=process` would
have sent it (src/fanout/engine/item_processes.py): checkpoints, retries, progress and
correlation ids do not change. Batches already running stay on their threads.

A processor runs there only if it can: a sync function that pickles (or a name that
imports) and that loads in a worker. Otherwise, and with `FANOUT_CPU_BOUND_PROCESSES=false`,
the rest stays on threads, one batch per core at a time. Each choice is logged once.

What changes for the processor: its remaining items run in forked copies of the flow
process, so module-level state it changes (a counter, a cache) changes in the worker's
copy, not in the flow process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

from prefect import get_run_logger

from fanout.core.errors import ProcessorNotFound
from fanout.core.outcome import ItemOutcome
from fanout.core.settings import FlowSettings
from fanout.engine.item_path import ItemRun
from fanout.engine.item_processes import ItemProcesses, running_in_processes, worker_processes
from fanout.engine.processor_kind import processor_kind

CPU_BOUND_SHARE = 0.8
"""The flow process computing this share of a core while the first batches ran marks the items CPU-bound."""
MIN_ITEM_SECONDS = 0.001
"""Items shorter than this stay on threads: each item in a worker costs the flow tens of microseconds."""
MIN_REST_SECONDS = 1.0
"""A rest of less item time than this stays on threads: starting workers and loading the processor cost more."""
SETTING = "FANOUT_CPU_BOUND_PROCESSES"
SCHEDSTAT_TASKS = "/proc/self/task"


class CpuShare:
    """How much of a core the threads that run items wanted since it was made: seconds they ran or waited for
    a CPU, per wall second.

    Time waiting for a CPU counts (Linux's per-thread scheduler statistics), so items that
    compute read as computing on a crowded machine too, where the CPU time alone would fall
    with the share of a core the process is given. Only the item threads count: on a crowded
    machine the waits of Prefect's own threads (its loop, log and event services) add up to
    more than a core while the items only sleep. Elsewhere: the process's CPU time.
    """

    def __init__(self, threads: Callable[[], Iterable[int]] | None = None) -> None:
        self._threads = threads
        self._start, self._wall = thread_demands(), time.perf_counter()

    def share(self) -> float:
        wall = time.perf_counter() - self._wall
        if wall <= 0:
            return 0.0
        now = thread_demands()
        if PROCESS in now or PROCESS in self._start:
            return (time.process_time() - self._start.get(PROCESS, 0.0)) / wall
        counted = now if self._threads is None else {tid: now[tid] for tid in self._threads() if tid in now}
        return sum(demand - self._start.get(tid, 0.0) for tid, demand in counted.items()) / wall


PROCESS = -1
"""`thread_demands`' key for the process's CPU time, where the kernel gives no per-thread statistics."""


def thread_demands() -> dict[int, float]:
    """Seconds each of this process's threads ran on a CPU or waited in its run queue, by native thread id
    (the process's CPU time under `PROCESS` where the kernel does not say)."""
    try:
        tasks = os.listdir(SCHEDSTAT_TASKS)
    except OSError:
        return {PROCESS: time.process_time()}
    demands: dict[int, float] = {}
    for task in tasks:
        try:
            with open(f"{SCHEDSTAT_TASKS}/{task}/schedstat") as stats:
                running, waiting, _ = stats.read().split()
        except (OSError, ValueError):
            continue  # a thread that ended meanwhile, or a kernel without these statistics
        demands[int(task)] = (int(running) + int(waiting)) / 1e9
    return demands or {PROCESS: time.process_time()}


def cores_for(settings: FlowSettings) -> int:
    """Items at a time that computing items can use: one per core (`FANOUT_PROCESSES` when set), within
    `max_parallel`."""
    return min(settings.processes or worker_processes(), settings.max_parallel)


def cpu_bound(settings: FlowSettings, share: float) -> bool:
    """Whether items on this process's threads kept it computing `share` of a core, with more threads than
    cores to run them."""
    return settings.task_runner == "thread" and share >= CPU_BOUND_SHARE and cores_for(settings) < settings.max_parallel


def rest_seconds(finished: Sequence[ItemOutcome], remaining: int) -> tuple[float, float]:
    """The mean item time of `finished` outcomes, and the item time of `remaining` more at that pace."""
    timed = [outcome.duration for outcome in finished if outcome.duration is not None]
    per_item = sum(timed) / len(timed) if timed else 0.0
    return per_item, per_item * remaining


@dataclass
class CpuBoundRest:
    """The decision for a run's remaining items once its first batch finished, taken once."""

    settings: FlowSettings
    run: ItemRun
    stack: ExitStack
    """Holds the worker processes, when the rest goes to them, until the run's items are done."""

    def window(self, share: float, finished: Sequence[ItemOutcome], remaining: int) -> int | None:
        """Batches at a time for the rest (None: as many as the runner takes); when the items are CPU-bound,
        the worker processes the rest goes to are started here, or why it stays on threads is logged."""
        if not cpu_bound(self.settings, share):
            return None
        cores = cores_for(self.settings)
        per_item, rest = rest_seconds(finished, remaining)
        if per_item < MIN_ITEM_SECONDS or rest < MIN_REST_SECONDS:
            return cores  # too little work left to move, or to be worth a line in the run's log
        reason = self._staying(cores)
        if reason is None:
            reason = self._move(cores)
        computed = f"items are CPU-bound (the flow process wanted {share:.1f} cores while the first batches ran)"
        if reason is None:
            get_run_logger().info(
                "%s: the remaining %d items run in %d worker processes, one per core (%s=false keeps them on threads)",
                computed,
                remaining,
                cores,
                SETTING,
            )
        else:
            get_run_logger().info(
                "%s: %d threads at a time, one per core; they stay on threads (%s)", computed, cores, reason
            )
        return cores

    def _staying(self, cores: int) -> str | None:
        """Why the rest stays on threads, or None when worker processes would take it."""
        if not self.settings.cpu_bound_processes:
            return f"{SETTING}=false"
        if cores < 2:
            return "one core"
        if processor_kind(self.run.process) != "sync":
            return "an async processor runs on an event loop"
        return None

    def _move(self, cores: int) -> str | None:
        """Start `cores` worker processes for the task runs submitted from now on; why not, if they cannot
        run the processor."""
        try:
            processes = ItemProcesses(self.run.function or self.run.processor, cores)
            self.stack.enter_context(running_in_processes(processes))
        except ProcessorNotFound as refused:
            return str(refused)
        return None

"""How items reach task runs: submitted one per task run or in batches, gathered as they finish.

Grouping is all this module decides; every task run carries its items down
the same path (src/fanout/engine/item_path.py). Small runs get one task run per item, so a
person finds `process_item-item-3` in the UI; larger runs go in batches cut to
the pace measured in the run (src/fanout/engine/batching.py), which keeps the number of
task runs, and of the events the server must store, bounded. A task run with a
failed item ends Failed, and still hands back every item's outcome.
"""

from __future__ import annotations

import queue
import time
from collections import deque
from typing import Any

from prefect import get_run_logger, unmapped
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner
from prefect.utilities.annotations import quote

from fanout.core.outcome import ItemOutcome, describe
from fanout.core.settings import FlowSettings
from fanout.engine.batching import CPU_BOUND_SHARE, PROBE_WAIT_SECONDS, BatchPlan
from fanout.engine.item_path import ItemRun, TaskItemsFailed
from fanout.engine.item_processes import running_in_processes, worker_processes
from fanout.engine.progress import ProgressReporter
from fanout.engine.runners import item_processes, slots
from fanout.engine.tasks import BatchOutcomes, ItemTasks, item_tasks


def fan_out(
    runner: TaskRunner[Any],
    items: list[str],
    run: ItemRun,
    settings: FlowSettings,
    progress: ProgressReporter,
    tasks: ItemTasks | None = None,
) -> list[ItemOutcome]:
    """Every item's outcome, from task runs of `tasks` (the seed's `process_item` when not given)
    submitted as the batch plan says.

    Task runs on this process's threads count their items towards `progress`
    as they finish; task runs elsewhere (Dask workers) are counted here when
    they return. Items that compute on threads have their remaining batches
    submitted a core's worth at a time (`cpu_bound_window`).
    """
    tasks = tasks or item_tasks("process_item")
    plan = BatchPlan(items, settings.model_copy(update={"max_parallel": slots(settings)}))
    # On threads a batch's items are quoted: Prefect would otherwise visit every item looking
    # for futures, twice per submission (0.15 s for 10,000). Dask's runner does not unwrap
    # quoted mapped parameters, and ships the items to its workers anyway.
    in_process = settings.task_runner != "dask"
    finished: queue.SimpleQueue[PrefectFuture[Any]] = queue.SimpleQueue()
    in_flight: dict[PrefectFuture[Any], list[str]] = {}
    waiting: deque[list[str]] = deque()
    window: int | None = None  # batches in flight at most; None: as many as the runner takes
    busy = CpuShare()

    def submit(batches: list[list[str]]) -> None:
        waiting.extend(batches)
        room = len(waiting) if window is None else max(0, window - len(in_flight))
        launch([waiting.popleft() for _ in range(min(room, len(waiting)))])

    def launch(batches: list[list[str]]) -> None:
        if not batches:
            return
        if plan.one_per_task:
            futures = runner.map(tasks.one, {"item": [batch[0] for batch in batches], "run": unmapped(run)})
        else:
            futures = runner.map(
                tasks.batch,
                {
                    "items": [quote(batch) for batch in batches] if in_process else batches,
                    "run": unmapped(run),
                    "label": [f"{batch[0]}..{batch[-1]}" for batch in batches],
                },
            )
        for future, batch in zip(futures, batches, strict=True):
            in_flight[future] = batch
            future.add_done_callback(finished.put)

    outcomes: list[ItemOutcome] = []
    with running_in_processes(item_processes(settings, run.function or run.processor)):
        submit(plan.opening())
        while in_flight or waiting:
            try:
                future = finished.get(timeout=None if plan.widened else PROBE_WAIT_SECONDS)
            except queue.Empty:
                submit(plan.widen())
                continue
            batch = in_flight.pop(future)
            batch_outcomes, counted = task_outcomes(future, batch)
            if not plan.planned:
                window = cpu_bound_window(settings, busy.share())
                submit(plan.rest(batch_outcomes, slots=window))
            else:
                submit([])
            if not (in_process and counted):
                ok = sum(1 for outcome in batch_outcomes if outcome.ok)
                progress.advance(completed=ok, failed=len(batch_outcomes) - ok)
            outcomes.extend(batch_outcomes)
    return outcomes


class CpuShare:
    """How busy this process's processors were since it was made: CPU seconds per wall second."""

    def __init__(self) -> None:
        self._cpu, self._wall = time.process_time(), time.perf_counter()

    def share(self) -> float:
        wall = time.perf_counter() - self._wall
        return (time.process_time() - self._cpu) / wall if wall > 0 else 0.0


def cpu_bound_window(settings: FlowSettings, share: float) -> int | None:
    """Batches at a time for the rest of a run whose first batches kept the flow process `share` busy:
    as many as cores when items run on threads and compute (src/fanout/engine/batching.py), else no cap."""
    if settings.task_runner != "thread" or share < CPU_BOUND_SHARE:
        return None
    cores = worker_processes()
    if cores >= settings.max_parallel:
        return None
    get_run_logger().info(
        "items are CPU-bound (the flow process computed %.0f%% of the time): %d threads at a time, one per core; "
        "FANOUT_TASK_RUNNER=process would run them on every core",
        share * 100,
        cores,
    )
    return cores


def task_outcomes(future: PrefectFuture[Any], batch: list[str]) -> tuple[list[ItemOutcome], bool]:
    """A finished task run's item outcomes, and whether its items counted themselves.

    A task run Failed by its items' failures carries their outcomes; one that
    ended without returning (its process died, Dask lost it) fails each of its
    items with that error.
    """
    try:
        result = future.result()
    except TaskItemsFailed as failed:
        return list(failed.outcomes), True
    except Exception as error:  # noqa: BLE001 - reported per item
        return [ItemOutcome(item=item, error=describe(error)) for item in batch], False
    if isinstance(result, BatchOutcomes):
        return result.outcomes, True
    return [result], True

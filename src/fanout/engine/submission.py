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
from collections import deque
from contextlib import ExitStack
from typing import Any

from prefect import unmapped
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner
from prefect.utilities.annotations import quote

from fanout.core.outcome import ItemOutcome, describe
from fanout.core.settings import FlowSettings
from fanout.engine.batching import PROBE_WAIT_SECONDS, BatchPlan
from fanout.engine.cpu_bound import CpuBoundRest, CpuShare, cores_for, cpu_bound
from fanout.engine.item_path import ITEM_THREADS, ItemRun, TaskItemsFailed
from fanout.engine.item_processes import running_in_processes
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
    they return. Items that compute on threads have the rest of the run sent
    to worker processes, or a core's worth of batches at a time
    (src/fanout/engine/cpu_bound.py).
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
    busy = CpuShare(threads=ITEM_THREADS.copy)

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
    with ExitStack() as stack:
        stack.enter_context(running_in_processes(item_processes(settings, run.function or run.processor)))
        rest = CpuBoundRest(settings, run, stack)
        submit(plan.opening())
        while in_flight or waiting:
            try:
                future = finished.get(timeout=None if plan.widened else PROBE_WAIT_SECONDS)
            except queue.Empty:
                submit(plan.widen(slots=cores_for(settings) if cpu_bound(settings, busy.share()) else None))
                continue
            batch = in_flight.pop(future)
            batch_outcomes, counted = task_outcomes(future, batch)
            if not plan.planned:
                window = rest.window(busy.share(), batch_outcomes, plan.remaining)
                submit(plan.rest(batch_outcomes, slots=window))
            else:
                submit([])
            if not (in_process and counted):
                ok = sum(1 for outcome in batch_outcomes if outcome.ok)
                progress.advance(completed=ok, failed=len(batch_outcomes) - ok)
            outcomes.extend(batch_outcomes)
    return outcomes


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

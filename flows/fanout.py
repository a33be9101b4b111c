"""The `fan-out-fan-in` flow: plan the items, skip the checkpointed ones, run the rest, gather in order."""

# No `from __future__ import annotations` here: the flow's signature must hold the real
# `FanoutRequest` class, because `flow.serve` cloudpickles the flow function by value and
# a string annotation could not be resolved in the flow-run subprocess.
import functools
import gc
import queue
import time
from typing import Any

from prefect import flow, get_run_logger, unmapped
from prefect.futures import PrefectFuture
from prefect.results import ResultRecord
from prefect.runtime import flow_run
from prefect.states import Completed, State
from prefect.task_runners import TaskRunner
from prefect.utilities.annotations import quote

from flows.batching import PROBE_WAIT_SECONDS, BatchPlan, batch_size_for
from flows.checkpoints import CheckpointStore, result_storage
from flows.failures import settle
from flows.item_logging import correlating
from flows.item_timing import collect, with_timing
from flows.outcome import ItemOutcome, describe
from flows.prefect_adapter import heartbeats_off
from flows.processor import load_processor
from flows.progress import ProgressReporter, reporting
from flows.report import publishing_report
from flows.request import FanoutRequest, plan_items
from flows.concurrency import check_limit
from flows.runners import check_runner, task_runner
from flows.settings import FanoutSettings, get_settings
from flows.tasks import configured_process_item, process_batch

FLOW_NAME = "fan-out-fan-in"


@flow(name=FLOW_NAME, persist_result=True, validate_parameters=True)
def fan_out_fan_in(request: FanoutRequest = FanoutRequest()) -> list[Any]:
    """Fan one `process_item` out per item, wait for all, and return their results in item order.

    Checkpoints belong to the orchestration instance (`request.instance_id`, else
    this flow run's id), so running the same instance again never redoes an item
    that finished. A failed item does not stop its siblings; the run fails at the
    end naming every failed item.
    """
    freeze_startup_heap()
    settings = get_settings()
    items = plan_items(request, settings.max_items)
    load_processor(settings.processor)
    check_runner(settings)
    check_limit(settings)
    instance_id = request.instance_id or str(flow_run.get_id())
    with correlating(str(flow_run.get_id()), instance_id):
        started = time.perf_counter()
        outcomes = run_items(items, instance_id, settings)
    elapsed = time.perf_counter() - started
    with publishing_report(instance_id, [outcomes[item] for item in items], elapsed, settings.report_table_limit):
        output = gather(items, outcomes, request, instance_id)
    return final_state(output)  # type: ignore[return-value]  # Prefect gives callers the state's data


@functools.cache
def freeze_startup_heap() -> None:
    """Take the objects alive at this process's first run out of the garbage collector's scans, once.

    They are modules and their data (Prefect's alone: ~130,000 objects), alive
    until the process ends. A run allocates several objects per item, which sets
    off full collections that walked all of them: one took 0.125 s of a
    10,000-item run. Frozen, they are never scanned; everything created later is
    collected as usual.
    """
    gc.freeze()


def final_state(output: list[Any]) -> State[list[Any]]:
    """The run's Completed state holding `output`, which the flow returns in place of the list.

    Prefect looks for futures and states in whatever a flow returns, element by
    element: three passes over a returned list, one over a returned state's data
    (0.3 s against 0.22 s for a flow returning 10,000 strings, measured). Whoever
    calls the flow still gets the list, and the list is what Prefect persists.
    """
    return Completed(data=output)


def run_here(request: FanoutRequest, flow_run_name: str | None = None) -> list[Any]:
    """Run the flow in this process and return its output, as `fanout run` and the benchmarks do.

    Without heartbeats: they feed the crash automations, which watch deployment
    runs only (a worker can restart those; nothing restarts an in-process run).
    Prefect 3.9.1's heartbeat thread also sleeps in 1 s steps and every flow
    waits for it on exit, which rounded each in-process run up to the next whole
    second (measured: an empty flow took 1.2 s with it, 0.2 s without).
    """
    flow_here = fan_out_fan_in.with_options(flow_run_name=flow_run_name) if flow_run_name else fan_out_fan_in
    with heartbeats_off():
        return flow_here(request)


def run_items(items: list[str], instance_id: str, settings: FanoutSettings) -> dict[str, ItemOutcome]:
    """Every item's outcome: checkpointed ones from storage, the rest from fresh task runs.

    A run in which every item finished records its output, which a rerun reads whole.
    """
    checkpoints = CheckpointStore(result_storage(settings), instance_id, settings.processor)
    recorded = checkpoints.load_output(items)
    found = recorded if recorded is not None else checkpoints.load(items)
    outcomes = {item: ItemOutcome(item=item, value=value, cached=True) for item, value in found.items()}
    pending = [item for item in items if item not in outcomes]
    get_run_logger().info(
        "instance %s: %d items, %d from checkpoints, %d to run",
        instance_id, len(items), len(outcomes), len(pending),
    )
    progress = ProgressReporter(total=len(items))
    progress.advance(completed=len(outcomes))
    with progress, reporting(instance_id, progress):
        if pending:
            with task_runner(settings) as runner:
                fresh = (
                    _run_per_item(runner, pending, instance_id, settings, progress)
                    if batch_size_for(len(pending), settings) == 1
                    else _run_batches(runner, pending, instance_id, settings, progress)
                )
            outcomes.update({outcome.item: outcome for outcome in fresh})
        progress.settle(outcomes.values())
    if recorded is None and all(outcome.ok for outcome in outcomes.values()):
        checkpoints.save_output(items, [outcomes[item].value for item in items])
    return outcomes


def _run_per_item(
    runner: TaskRunner[Any],
    items: list[str],
    instance_id: str,
    settings: FanoutSettings,
    progress: ProgressReporter,
) -> list[ItemOutcome]:
    """One task run per item; Prefect's retries, caching and persistence apply to each."""
    futures = runner.map(
        configured_process_item(settings),
        {"item": items, "processor": unmapped(settings.processor), "instance_id": unmapped(instance_id),
         "concurrency_limit": unmapped(settings.concurrency_limit)},
    )
    for future in futures:
        future.add_done_callback(progress.count_future)
    futures.wait()
    timings = collect(instance_id, items)
    return [
        with_timing(_outcome_from_state(item, future.state), timings.get(item))
        for item, future in zip(items, futures)
    ]


def _outcome_from_state(item: str, state: State[Any]) -> ItemOutcome:
    if state.is_completed():
        return ItemOutcome(item=item, value=completed_value(state), cached=state.name == "Cached")
    return ItemOutcome(item=item, error=_state_error(state))


def _run_batches(
    runner: TaskRunner[Any],
    items: list[str],
    instance_id: str,
    settings: FanoutSettings,
    progress: ProgressReporter,
) -> list[ItemOutcome]:
    """One task run per batch; each item inside is retried and checkpointed on its own.

    One small batch goes first, and the first small batch to finish sets the
    size of the rest (flows/batching.py).
    Batches running in this process count their items towards progress one by
    one (`ItemTally`); batches that ran in other processes (Dask workers) count
    when they return, so the status moves on either runner.
    """
    plan = BatchPlan(items, settings)
    # On threads the items are quoted: Prefect would otherwise visit every item of every batch
    # looking for futures, twice per submission (0.15 s for a batch of 10,000 items). Dask's
    # runner does not unwrap quoted mapped parameters, and ships them to its workers anyway.
    in_process = settings.task_runner == "thread"
    finished: queue.SimpleQueue[PrefectFuture[Any]] = queue.SimpleQueue()
    in_flight: dict[PrefectFuture[Any], list[str]] = {}

    def submit(batches: list[list[str]]) -> None:
        futures = runner.map(
            process_batch,
            {
                "items": [quote(batch) for batch in batches] if in_process else batches,
                "processor": unmapped(settings.processor),
                "instance_id": unmapped(instance_id),
                "label": [f"{batch[0]}..{batch[-1]}" for batch in batches],
                "settings": unmapped(settings),
            },
        )
        for future, batch in zip(futures, batches):
            in_flight[future] = batch
            future.add_done_callback(finished.put)

    submit(plan.opening())
    outcomes: list[ItemOutcome] = []
    while in_flight:
        try:
            future = finished.get(timeout=None if plan.widened else PROBE_WAIT_SECONDS)
        except queue.Empty:
            submit(plan.widen())
            continue
        future.wait()  # keeps the final state (and the unpersisted result) on the future
        batch_outcomes = _batch_outcomes(in_flight.pop(future), future.state)
        if not plan.planned:
            submit(plan.rest(batch_outcomes))
        if not in_process:
            ok = sum(1 for outcome in batch_outcomes if outcome.ok)
            progress.advance(completed=ok, failed=len(batch_outcomes) - ok)
        outcomes.extend(batch_outcomes)
    return outcomes


def _batch_outcomes(batch: list[str], state: State[Any]) -> list[ItemOutcome]:
    """A finished batch's item outcomes, or every item failed with the batch's error."""
    if state.is_completed():
        return list(completed_value(state))
    error = _state_error(state)
    return [ItemOutcome(item=item, error=error) for item in batch]


def completed_value(state: State[Any]) -> Any:
    """A completed task run's value, straight from the record it holds in memory when it has one.

    `State.result()` goes through Prefect's event-loop thread; with that thread busy
    relaying a large run's events it cost ~40 ms per batch (1.3 s for 10,000 items).
    """
    if isinstance(state.data, ResultRecord):
        return state.data.result
    return state.result()


def _state_error(state: State[Any]) -> str:
    """The error a failed or crashed task run ended with."""
    try:
        state.result(raise_on_failure=True)
    except BaseException as error:  # noqa: BLE001 - reported per item
        return describe(error)
    return f"ended {state.name}"


def gather(items: list[str], outcomes: dict[str, ItemOutcome], request: FanoutRequest, instance_id: str) -> list[Any]:
    """Results in item order (`None` for tolerated failures), or `ItemsFailed` naming each failed
    item and its last error; either way the item report is published (flows/failures.py)."""
    return settle(
        items, outcomes, instance_id,
        tolerated_count=request.tolerated_failure_count,
        tolerated_percentage=request.tolerated_failure_percentage,
    )

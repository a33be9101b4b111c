"""The `fan-out-fan-in` flow: plan the items, skip the checkpointed ones, fan out the rest, gather in order."""

# No `from __future__ import annotations` here: the flow's signature must hold the real
# `FanoutRequest` class, because `flow.serve` cloudpickles the flow function by value and
# a string annotation could not be resolved in the flow-run subprocess.
import dataclasses
import functools
import gc
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from prefect.states import Completed, State

from fanout.core.liveness import keeping_alive
from fanout.core.outcome import ItemOutcome
from fanout.core.prefect_adapter import heartbeats_off
from fanout.core.settings import FanoutSettings, get_settings
from fanout.core.wrap_up import after_final_state, wrap_up
from fanout.engine.async_items import submission_settings
from fanout.engine.concurrency import check_limit
from fanout.engine.failures import settle
from fanout.engine.instance_lease import holding_instance
from fanout.engine.item_logging import correlating
from fanout.engine.item_path import ItemRun
from fanout.engine.processor import load_processor
from fanout.engine.processor_kind import check_parallel, is_async, processor_kind
from fanout.engine.progress import ProgressReporter, reporting
from fanout.engine.report import publish_report
from fanout.engine.runners import check_runner, task_runner
from fanout.engine.submission import fan_out
from fanout.inputs.admission import planned_items
from fanout.inputs.request import FanoutRequest, item_count
from fanout.storage.instance_results import keep_failures, keep_plan
from fanout.storage.run_output import save_run_output

FLOW_NAME = "fan-out-fan-in"


@flow(
    name=FLOW_NAME,
    persist_result=True,
    result_serializer="json",
    validate_parameters=True,
    on_completion=[wrap_up],
    on_failure=[wrap_up],
    on_cancellation=[wrap_up],
    on_crashed=[wrap_up],
)
def fan_out_fan_in(request: FanoutRequest = FanoutRequest()) -> list[Any]:
    """Run every item of the request once per instance, and return their results in item order.

    Checkpoints belong to the orchestration instance (`request.instance_id`, else
    this flow run's id), so running the same instance again never redoes an item
    that finished. A failed item does not stop its siblings; the run fails at the
    end naming every failed item.
    """
    freeze_startup_heap()
    settings = get_settings()
    items, values = planned_items(request, settings)
    check_parallel(processor_kind(load_processor(settings.processor), settings.processor), settings.max_parallel)
    check_runner(settings)
    check_limit(settings)
    instance_id = request.instance_id or str(flow_run.get_id())
    run = dataclasses.replace(ItemRun.for_run(instance_id, settings), values=values)
    started = time.perf_counter()
    with (
        correlating(str(flow_run.get_id()), instance_id),
        keeping_alive(settings.liveness_seconds),
        holding_instance(request.instance_id, settings.instance_lease_seconds, run.storage),
    ):
        keep_plan(run.storage, instance_id, run.processor, items)  # results pages read the item order from it
        outcomes = run_instance(items, run, settings, announce_total=item_count(request) is None)
    elapsed = time.perf_counter() - started
    keep_failures(run.storage, instance_id, outcomes.values())
    ordered = [outcomes[item] for item in items]
    after_final_state(functools.partial(publish_report, instance_id, ordered, elapsed, settings.report_table_limit))
    settled = settle(
        items,
        outcomes,
        instance_id,
        tolerated_count=request.tolerated_failure_count,
        tolerated_percentage=request.tolerated_failure_percentage,
    )
    # What the status API shows (src/fanout/storage/run_output.py).
    save_run_output(run.storage, instance_id, settled.output, settled.failures)
    return final_state(settled.output)  # type: ignore[return-value]  # Prefect gives callers the state's data


def run_instance(
    items: list[str], run: ItemRun, settings: FanoutSettings, announce_total: bool = False
) -> dict[str, ItemOutcome]:
    """Every item's outcome: checkpointed ones from storage, the rest from fresh task runs.

    A run in which every item finished records its output, which a rerun reads whole.
    `announce_total`: publish the item count at once (the status URL cannot read it
    from the request, as for a source), not only with the first progress.
    """
    checkpoints = run.checkpoints()
    recorded = checkpoints.load_output(items)
    found = recorded if recorded is not None else checkpoints.load(items)
    outcomes = {item: ItemOutcome(item=item, value=value, cached=True) for item, value in found.items()}
    pending = [item for item in items if item not in outcomes]
    get_run_logger().info(
        "instance %s: %d items, %d from checkpoints, %d to run",
        run.instance_id,
        len(items),
        len(outcomes),
        len(pending),
    )
    progress = ProgressReporter(total=len(items), announce=announce_total)
    progress.advance(completed=len(outcomes))
    with progress, reporting(progress):
        if pending:
            with task_runner(settings) as runner:
                submitted = submission_settings(settings, is_async(run.processor), len(pending))
                outcomes.update(
                    {outcome.item: outcome for outcome in fan_out(runner, pending, run, submitted, progress)}
                )
        progress.settle(outcomes.values())
    if recorded is None and all(outcome.ok for outcome in outcomes.values()):
        checkpoints.save_output(items, [outcomes[item].value for item in items])
    return outcomes


@functools.cache
def freeze_startup_heap() -> None:
    """Take the objects alive at this process's first run out of the garbage collector's scans, once.

    They are modules and their data (Prefect's alone: ~130,000 objects), alive
    until the process ends. A run allocates several objects per item, which sets
    off full (generation 2) collections that walk all of them. Frozen, they are
    never scanned; everything created later is collected as usual.

    Kept on this measurement (`python -m benchmarks.gc_freeze`, a run's per-item
    bookkeeping in a fresh interpreter that imported the flow, median of 3, load
    average 5-9): at 100,000 items the 3 full collections paused 2.02 s in all
    without it (longest 0.66 s) and 0.64 s with it (longest 0.24 s); at 10,000
    items no full collection ran and both paused 5.4-5.5 ms, so it costs a small
    run nothing.
    """
    gc.freeze()


def final_state(output: list[Any]) -> State[list[Any]]:
    """The run's Completed state holding `output`, which the flow returns in place of the list.

    Prefect looks for futures and states in whatever a flow returns, element by
    element: three passes over a returned list, one over a returned state's data
    (0.3 s against 0.22 s for a flow returning 10,000 strings, measured). Whoever
    calls the flow still gets the list, and the list is what Prefect persists
    (as JSON: `result_serializer="json"`).
    """
    return Completed(data=output)


def run_here(request: FanoutRequest, flow_run_name: str | None = None) -> list[Any]:
    """Run the flow in this process and return its output, as `fanout run` and the benchmarks do.

    Without heartbeats: they feed the crash automations, which watch deployment
    runs only (a worker can restart those; nothing restarts an in-process run).
    Prefect's heartbeat thread also sleeps in 1 s steps and every flow waits for
    it on exit, which rounded each in-process run up to the next whole second
    (measured: an empty flow took 1.2 s with it, 0.2 s without).
    """
    flow_here = fan_out_fan_in.with_options(flow_run_name=flow_run_name) if flow_run_name else fan_out_fan_in
    with heartbeats_off():
        return flow_here(request)

"""The `fan-out-fan-in` flow: plan the request's items, `durable_map` the processor over them, return the list."""

# No `from __future__ import annotations` here: the flow's signature must hold the real
# `FanoutRequest` class, because `flow.serve` cloudpickles the flow function by value and
# a string annotation could not be resolved in the flow-run subprocess.
import functools
import gc
from typing import Any

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Completed, State

from fanout.core.prefect_adapter import heartbeats_off
from fanout.core.settings import get_settings
from fanout.core.wrap_up import wrap_up
from fanout.engine.durable_map import durable_map
from fanout.engine.processor import load_processor
from fanout.inputs.admission import planned_items
from fanout.inputs.items import KeyedItems
from fanout.inputs.request import FanoutRequest, item_count
from fanout.storage.checkpoints import result_storage
from fanout.storage.run_output import save_run_output

FLOW_NAME = "fan-out-fan-in"
TASK_NAME = "process_item"
"""The seed's task runs: `process_item-item-3`."""


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
    end naming every failed item. The processor is `FANOUT_PROCESSOR`, whose
    `module:function` names the instance's one stage; ids are `<instance>/<item>`.
    """
    freeze_startup_heap()
    settings = get_settings()
    keys, values = planned_items(request, settings)
    results = durable_map(
        load_processor(settings.processor),
        KeyedItems(keys, values, announce=item_count(request) is None),
        instance_id=request.instance_id,
        stage=settings.processor,
        name=TASK_NAME,
        stage_in_ids=False,
        tolerated_failure_count=request.tolerated_failure_count,
        tolerated_failure_percentage=request.tolerated_failure_percentage,
    )
    instance_id = request.instance_id or str(flow_run.get_id())
    output = list(results)
    # What the status API shows (src/fanout/storage/run_output.py).
    save_run_output(result_storage(settings), instance_id, output, results.failures)
    return final_state(output)  # type: ignore[return-value]  # Prefect gives callers the state's data


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

"""The `fan-out-fan-in` flow: plan the request's items, `durable_map` the processor over them, return the list."""

# No `from __future__ import annotations` here: the flow's signature must hold the real
# `FanoutRequest` class, because `flow.serve` cloudpickles the flow function by value and
# a string annotation could not be resolved in the flow-run subprocess.
import functools
import gc
import logging
from typing import Any

# What Prefect imports on a process's first flow call, imported with the flow instead: a process that
# preloads this module (the warm worker's) starts every run with them.
import prefect.flow_engine
import prefect.utilities.visualization  # noqa: F401
from prefect import flow
from prefect.client.orchestration import SyncPrefectClient
from prefect.context import FlowRunContext
from prefect.runtime import flow_run
from prefect.states import Completed, State

from fanout.core.prefect_adapter import (
    heartbeats_off,
    run_created,
    share_version_check,
    shared_tls_clients,
    written_completed,
)
from fanout.core.settings import flow_settings
from fanout.core.wrap_up import after_final_state, wrap_up
from fanout.engine.durable_map import durable_map
from fanout.engine.instance_lease import instance_tag
from fanout.engine.processor import load_processor
from fanout.engine.tasks import item_tasks
from fanout.inputs.admission import planned_items
from fanout.inputs.items import KeyedItems
from fanout.inputs.request import FanoutRequest, item_count
from fanout.storage.checkpoints import result_storage
from fanout.storage.run_output import save_run_output

logger = logging.getLogger(__name__)

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
    settings = flow_settings()
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


def warm_up() -> None:
    """Do now what a process's first run of the flow does before any item and no run decides: the first read
    of the flow's settings (pydantic-settings inspects each field's type the first time a class is read) and
    the seed's item tasks. A warm worker's forkserver does it once, before it forks any flow-run process. A
    setting the flow cannot read is left to the run that reads it, which fails saying so."""
    try:
        flow_settings()
    except ValueError as error:  # pydantic's ValidationError
        logger.debug("the flow's settings were not read ahead: %s", error)
    item_tasks(TASK_NAME)


@functools.cache
def freeze_startup_heap() -> None:
    """Take the objects alive at this process's first run out of the garbage collector's scans, once.

    They are modules and their data, alive until the process ends; a run's per-item
    allocations set off full collections that would walk all of them. Everything
    created later is collected as usual. Measured by `python -m benchmarks.gc_freeze`.
    """
    gc.freeze()


def final_state(output: list[Any]) -> State[list[Any]]:
    """The run's Completed state holding `output`, which the flow returns in place of the list.

    Prefect scans whatever a flow returns for futures and links each element to the run:
    three passes over a returned list, two over a returned state's data. The state here
    carries `output` already written as the run's result (as JSON), and holds it only
    once Prefect recorded the state, when the flow's wrap-up hands it back: no pass over
    it at all. Whoever calls the flow still gets the list. A run whose flow was given
    other hooks, without the wrap-up, returns the list in a plain state.
    """
    context = FlowRunContext.get()
    flow_object = context.flow if context is not None else None
    if flow_object is None or wrap_up not in flow_object.on_completion_hooks:
        return Completed(data=output)
    state, hand_back = written_completed(output)
    after_final_state(hand_back)
    return state  # type: ignore[no-any-return]


def start_events_service(client: SyncPrefectClient) -> None:
    """Start Prefect's events service in this process now, sharing `client`'s check of the server's version.

    Every run starts it at its first event (its first task run's), and it then connects
    while the items run. Started before the run exists, it connects while the run is
    created, on a thread of its own.
    """
    from prefect.events.worker import EventsWorker

    share_version_check(client)
    EventsWorker.instance()


def run_here(request: FanoutRequest, flow_run_name: str | None = None) -> list[Any]:
    """Run the flow in this process and return its output, as `fanout run` and the benchmarks do.

    Without heartbeats: they feed the crash automations, which watch deployment
    runs only (a worker can restart those; nothing restarts an in-process run).
    Every flow also waits on exit for Prefect's heartbeat thread, which sleeps in
    whole seconds (docs/design/batches-and-progress.md). The run's API client takes
    the process's one TLS context, so a run does not load the CA bundle again. A run
    with a name or an instance is created here with its name and the instance's tag,
    which Prefect's engine and the instance lease would otherwise each add with an update.
    Prefect's events service, which a run starts at its first event, is started as the run
    is created, and takes the version check the run's client made as its own.
    """
    with heartbeats_off(), shared_tls_clients() as clients:
        start_events_service(clients.client)
        if flow_run_name is None and request.instance_id is None:
            return fan_out_fan_in(request)
        tags = [instance_tag(request.instance_id)] if request.instance_id else []
        output: list[Any] = run_created(fan_out_fan_in, {"request": request}, clients.client, flow_run_name, tags)
        return output

"""`durable_map`: run a function once per item inside any Prefect flow, durably, and gather the results in order.

Everything the seed's orchestrator does for its items happens here, for any
flow: checkpoints per instance and stage, resume that runs only unfinished
items, retries, tolerated failures, batching, threads or an event loop, a
global concurrency limit, live progress, item-named task runs, correlation
ids, the item report, and the instance lease.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import functools
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from prefect import get_run_logger
from prefect.context import FlowRunContext

from fanout.core.errors import FanoutError
from fanout.core.liveness import keeping_alive
from fanout.core.outcome import ItemOutcome
from fanout.core.prefect_adapter import share_version_check
from fanout.core.settings import FlowSettings, flow_settings
from fanout.core.wrap_up import after_final_state, wrap_up
from fanout.engine.async_items import submission_settings
from fanout.engine.concurrency import check_limit
from fanout.engine.failures import stage_result
from fanout.engine.instance_lease import holding_instance
from fanout.engine.item_logging import correlating
from fanout.engine.item_path import ItemRun
from fanout.engine.processor_kind import check_parallel, processor_kind
from fanout.engine.progress import ProgressReporter, reporting
from fanout.engine.report import publish_report
from fanout.engine.retry_policy import RetryPolicy
from fanout.engine.runners import check_runner, task_runner
from fanout.engine.stage import StageFunction, check_stage, forget_stage_names, stage_function, stage_names
from fanout.engine.submission import fan_out
from fanout.engine.tasks import ItemTasks, item_tasks
from fanout.inputs.items import ItemKey, KeyedItems, keyed
from fanout.inputs.sources import ItemSource, iter_source
from fanout.storage.instance_results import keep_failures, keep_plan, refresh_index
from fanout.storage.written import WrittenRecords, noting_writes

OUTSIDE_FLOW = (
    "durable_map runs inside a Prefect flow run, which holds its checkpoints, task runs and logs: "
    "call it from a function decorated with @prefect.flow (in a test, run that flow under "
    "prefect.testing.utilities.prefect_test_harness())"
)

INDEX_THREAD = "fanout-results-index"
REPORT_THREAD = "fanout-item-table"


class NotInFlow(FanoutError, RuntimeError):
    """`durable_map` was called outside a Prefect flow run."""


class MapResults(list[Any]):
    """The results in item order (None in the slot of a tolerated failure), and the failed items.

    `failures` lists each item that failed for good: `{"item", "status", "attempts", "error"}`.
    """

    def __init__(self, output: Iterable[Any] = (), failures: Iterable[dict[str, Any]] = ()) -> None:
        super().__init__(output)
        self.failures: list[dict[str, Any]] = list(failures)


def durable_map(
    fn: Callable[..., Any],
    items: Iterable[Any] | ItemSource | KeyedItems,
    *,
    instance_id: str | None = None,
    key: ItemKey = None,
    stage: str | None = None,
    name: str | None = None,
    max_parallel: int | None = None,
    batch_size: int | None = None,
    retries: int | None = None,
    retry_delay_seconds: float | None = None,
    task_runner: str | None = None,
    concurrency_limit: str | None = None,
    tolerated_failure_count: int = 0,
    tolerated_failure_percentage: float = 0,
    stage_in_ids: bool = True,
) -> MapResults:
    """Run `fn` once per item, inside the current Prefect flow run, and return the results in item order.

    `fn` takes one item and returns a JSON value: a plain function (run on up to
    `max_parallel` threads), an `async def` function (up to `max_parallel` items
    in flight on one event loop), or a Prefect `@task`, whose function is called
    and whose `retries`, `retry_delay_seconds` and `retry_jitter_factor` apply to
    each item, for any exception. For any other function, items that raise
    `TransientError`, `ConnectionError` or `TimeoutError` are retried
    (`retries` times, waiting `retry_delay_seconds` doubled each time; by default
    `FANOUT_RETRIES` and `FANOUT_RETRY_DELAY_SECONDS`), and any other exception
    fails the item at once.

    `items`: any iterable of JSON values (a list, a generator), or a source
    (`fanout.source(uri, format=...)`), read once, in order.

    Item identity. Each item has a key, which names its checkpoint, its task
    run (`<name>-<key>`), its correlation and idempotency id
    (`<instance>/<stage>/<key>`, `current_item().idempotency_key`) and its row
    in the report:

    - by position (`key=None`, the default): `0`, `1`, ... Items may repeat. A
      rerun of the instance must hand over the same items in the same order,
      as a Durable Functions orchestrator replays its calls in order: the
      result checkpointed for position 3 is the result of item 3.
    - by a field (`key="id"`): object items keyed by that field's value.
    - by a function (`key=lambda order: order["sku"]`): the string or integer it returns.

    With `key=` items may come in any order on a rerun, and two items with one
    key are refused (`DuplicateItems`) before anything runs.

    Durability. Each finished item is checkpointed at once, in the instance's
    stage: `instance_id` (the flow run's id when not given; give one to resume
    from another flow run) and `stage` (`fn`'s `__qualname__`, with `-2`, `-3`
    on the second, third call of a function of that name in the flow run,
    unless named). Running the instance again runs only the items without a
    checkpoint, in each stage. With `instance_id` given, the run holds the
    instance's lease: a second run of it at the same time fails with
    `InstanceBusy` before any item runs.

    Failures. A failed item does not stop its siblings. Once every item has
    finished, more failures than tolerated (`tolerated_failure_count`, and
    `tolerated_failure_percentage` of the items; none by default) raise
    `ItemsFailed` naming each failed item and its error; tolerated ones leave
    None in their slot and are listed in the result's `failures`. The task run
    of a failed item ends Failed, and the item's traceback is in the run's logs
    under its correlation id.

    Also: `name` names the task runs (`fn`'s name by default); `batch_size`
    fixes the items per task run (automatic: one per item up to
    `FANOUT_PER_ITEM_TASK_LIMIT`, then batches); `task_runner` is `thread`,
    `process` or `dask` (on `thread`, items that prove CPU-bound have the rest
    of the stage run in worker processes when `fn` can run in one, unless
    `FANOUT_CPU_BOUND_PROCESSES=false`); `concurrency_limit` names a Prefect global concurrency limit
    capping items in flight across runs; `stage_in_ids=False` leaves the stage
    out of ids (`<instance>/<key>`) for a flow with one stage per instance.
    Other settings come from `FANOUT_*` variables.

    Raises `NotInFlow` when called outside a flow run. In an `async def` flow,
    `await durable_map_async(...)`.
    """
    context = _flow_run_context()
    share_version_check(context.client)
    overrides = {
        "max_parallel": max_parallel,
        "batch_size": batch_size,
        "retries": retries,
        "retry_delay_seconds": retry_delay_seconds,
        "task_runner": task_runner,
        "concurrency_limit": concurrency_limit,
    }
    settings = flow_settings(**{field: value for field, value in overrides.items() if value is not None})
    target = stage_function(fn, name)
    check_parallel(target.kind, settings.max_parallel)
    check_runner(settings)
    check_limit(settings)
    planned = items if isinstance(items, KeyedItems) else keyed(_read(items, settings), key)
    _install_wrap_up(context)
    flow_run = context.flow_run
    assert flow_run is not None
    instance = instance_id or str(flow_run.id)
    stage_name = check_stage(stage) if stage else _default_stage(flow_run.id, flow_run.run_count, instance, target)
    run = dataclasses.replace(
        ItemRun.for_run(instance, settings),
        processor=stage_name,
        retry=_retry_policy(target, settings, retries, retry_delay_seconds),
        values=planned.values,
        function=target.function,
        stage_in_ids=stage_in_ids,
    )
    if not planned.keys:
        return MapResults()
    tolerated = (tolerated_failure_count, tolerated_failure_percentage)
    return _map(run, planned, settings, item_tasks(target.name), str(flow_run.id), instance_id, tolerated)


async def durable_map_async(fn: Callable[..., Any], items: Iterable[Any] | ItemSource, **options: Any) -> MapResults:
    """`durable_map` for an `async def` flow: the same call, awaited, on a thread of its own so the flow's
    event loop goes on."""
    _flow_run_context()
    return await asyncio.to_thread(functools.partial(durable_map, fn, items, **options))


def _map(
    run: ItemRun,
    planned: KeyedItems,
    settings: FlowSettings,
    tasks: ItemTasks,
    flow_run_id: str,
    lease_instance: str | None,
    tolerated: tuple[int, float],
) -> MapResults:
    """Plan and run one stage's items and judge their failures; `ItemsFailed` beyond the tolerated failures."""
    started = time.perf_counter()
    with (
        correlating(flow_run_id, run.scope),
        keeping_alive(settings.liveness_seconds),
        holding_instance(lease_instance, settings.instance_lease_seconds, run.storage),
        noting_writes() as written,
    ):
        keep_plan(run.storage, run.instance_id, run.processor, planned.keys)  # the item order, for results pages
        outcomes, output = run_stage(planned.keys, run, settings, tasks, announce_total=planned.announce)
    elapsed = time.perf_counter() - started
    ordered = [outcomes[item] for item in planned.keys]
    failed = [outcome for outcome in ordered if outcome.error is not None] if output is None else []
    keep_failures(run.storage, run.instance_id, failed, index=False)
    indexing = _index_results(run, planned.keys, output, written)
    table = _alongside(functools.partial(publish_report, run.scope, ordered, elapsed, settings.report_table_limit))
    try:
        after_final_state(table.start)
        result = stage_result(
            ordered,
            run.instance_id,
            tolerated_count=tolerated[0],
            tolerated_percentage=tolerated[1],
            output=output,
        )
    finally:
        after_final_state(table.join)
        after_final_state(indexing.join)
    return MapResults(result.output, result.failures)


def _index_results(
    run: ItemRun, keys: list[str], output: list[Any] | None, written: WrittenRecords
) -> threading.Thread:
    """Record the stage's output (when `output` is given) and bring the instance's results index up to
    date, on a thread of its own, begun now.

    Both are O(run) work that nothing in the run waits for (the output record saves
    a rerun from reading every item's), so they go on while the flow records its
    result, its final state and its report; the wrap-up waits for them last, so a
    finished flow call leaves both written. The index takes the places of the
    records this process wrote from `written`, without reading them back.
    """
    thread = threading.Thread(target=_after_stage, args=(run, keys, output, written), name=INDEX_THREAD)
    thread.start()
    return thread


def _alongside(action: Callable[[], object]) -> threading.Thread:
    """A thread, to start in the wrap-up, that runs `action` in this flow run's context while the wrap-up goes on.

    The run's item table and its item report are two API writes that do not wait for each
    other: the table goes on this thread while the report is written, and the wrap-up joins
    it after. The context carries the flow run the table belongs to and the run's API client.
    """
    return threading.Thread(target=contextvars.copy_context().run, args=(action,), name=REPORT_THREAD)


def _after_stage(run: ItemRun, keys: list[str], output: list[Any] | None, written: WrittenRecords) -> None:
    if output is not None:
        run.checkpoints().save_output(keys, output)
    refresh_index(run.storage, run.instance_id, written)


def run_stage(
    items: list[str], run: ItemRun, settings: FlowSettings, tasks: ItemTasks, announce_total: bool = False
) -> tuple[dict[str, ItemOutcome], list[Any] | None]:
    """Every item's outcome: checkpointed ones from storage, the rest from fresh task runs; and the stage's
    output to record, when every item finished and no output record gave them (a rerun reads it whole).

    `announce_total`: publish the item count at once (the status URL cannot read it
    from the request, as for a source), not only with the first progress.
    """
    checkpoints = run.checkpoints()
    recorded = checkpoints.load_output(items)
    found = recorded if recorded is not None else checkpoints.load(items)
    outcomes = {item: ItemOutcome(item, value, None, 0, True) for item, value in found.items()}
    pending = [item for item in items if item not in outcomes]
    get_run_logger().info(
        "instance %s, stage %s: %d items, %d from checkpoints, %d to run",
        run.instance_id,
        run.processor,
        len(items),
        len(outcomes),
        len(pending),
    )
    progress = ProgressReporter(total=len(items), announce=announce_total)
    progress.advance(completed=len(outcomes))
    with progress, reporting(progress):
        if pending:
            with task_runner(settings) as runner:
                submitted = submission_settings(settings, _is_async(run), len(pending))
                outcomes.update(
                    {outcome.item: outcome for outcome in fan_out(runner, pending, run, submitted, progress, tasks)}
                )
        failed = sum(1 for outcome in outcomes.values() if outcome.error is not None)
        progress.set_final(completed=len(outcomes) - failed, failed=failed)
    if recorded is None and not failed:
        return outcomes, [outcomes[item].value for item in items]
    return outcomes, None


def _is_async(run: ItemRun) -> bool:
    return processor_kind(run.process) == "async"


def _retry_policy(
    target: StageFunction, settings: FlowSettings, retries: int | None, delay_seconds: float | None
) -> RetryPolicy:
    """A Prefect task's own policy, with what the call says on top; else the settings' (the call's
    `retries` and `retry_delay_seconds` are already in them)."""
    if target.retry is None:
        return RetryPolicy.from_settings(settings)
    return dataclasses.replace(
        target.retry,
        retries=target.retry.retries if retries is None else retries,
        delay_seconds=target.retry.delay_seconds if delay_seconds is None else delay_seconds,
    )


def _default_stage(flow_run_id: UUID, run_count: int, instance_id: str, target: StageFunction) -> str:
    """The stage's name from its function's, numbered within this attempt of the flow run."""
    names, new = stage_names(flow_run_id, run_count)
    if new:
        after_final_state(functools.partial(forget_stage_names, flow_run_id, run_count))
    return names.next(instance_id, target.qualified)


def _flow_run_context() -> FlowRunContext:
    """The current flow run's context; `NotInFlow`, saying how to fix it, outside one."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        raise NotInFlow(OUTSIDE_FLOW)
    return context


def _read(items: Iterable[Any] | ItemSource, settings: FlowSettings) -> Iterable[Any]:
    """The items to key: a source's, streamed, or the iterable itself."""
    return iter_source(items, settings.max_item_bytes) if isinstance(items, ItemSource) else items


def _install_wrap_up(context: FlowRunContext) -> None:
    """Make the flow run the wrap-up (src/fanout/core/wrap_up.py) at its final state, as the seed's flow
    declares it: the report, the lease's release and the last progress count wait for it.

    The hook goes on the flow object this run is running, once; it runs nothing for a run that
    queued no wrap-up.
    """
    flow = context.flow
    if flow is None:
        return
    for hooks in (flow.on_completion_hooks, flow.on_failure_hooks, flow.on_cancellation_hooks, flow.on_crashed_hooks):
        if wrap_up not in hooks:
            hooks.append(wrap_up)

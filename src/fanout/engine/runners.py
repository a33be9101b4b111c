"""Where task runs execute: a bounded thread pool in the flow process, worker processes beside it, or Dask.

`FANOUT_TASK_RUNNER=thread` (the default) runs at most `FANOUT_MAX_PARALLEL`
task runs at once on threads, so threads never grow with the number of items.
`FANOUT_TASK_RUNNER=process` runs one task run per worker process
(`FANOUT_PROCESSES`, one per core by default), each thread sending its batch of
items to its own worker (src/fanout/engine/item_processes.py): for sync
processors that compute in Python, which threads would run one at a time.
`FANOUT_TASK_RUNNER=dask` hands task runs to `prefect-dask`: the cluster at
`FANOUT_DASK_ADDRESS` when set, else a `distributed.LocalCluster` of
`FANOUT_DASK_WORKERS` processes started for the run (and stopped after it)
sharing `FANOUT_MAX_PARALLEL` threads between them. Dask pays ~80 ms per task
run, so large runs go to it in batches; checkpoints are the same records in
the same storage, so a run resumes the same way on either runner.
"""

from __future__ import annotations

import math
from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from fanout.core.errors import InvalidRequest
from fanout.core.settings import FlowSettings
from fanout.engine.item_processes import ItemProcesses, ProcessorRef, worker_processes
from fanout.engine.processor import load_processor
from fanout.engine.processor_kind import InvalidProcessor, processor_kind

DASK_EXTRA_HINT = "install the optional extra: pip install 'fanout[dask]'"


def task_runner(settings: FlowSettings) -> TaskRunner[Any]:
    """A fresh (not yet started) task runner for one flow run, as the settings choose."""
    if settings.task_runner == "dask":
        return dask_task_runner(settings)
    return ThreadPoolTaskRunner(max_workers=slots(settings))


def slots(settings: FlowSettings) -> int:
    """Task runs in flight at once: one per worker process on `process`, else `max_parallel`."""
    if settings.task_runner == "process":
        return settings.processes or worker_processes()
    return settings.max_parallel


def item_processes(settings: FlowSettings, processor: ProcessorRef) -> ItemProcesses | None:
    """The worker processes a run's items go to on `process` (not yet started); None on the other runners."""
    if settings.task_runner != "process":
        return None
    return ItemProcesses(processor, slots(settings))


def dask_task_runner(settings: FlowSettings) -> TaskRunner[Any]:
    """A `DaskTaskRunner` on the configured cluster, or on a LocalCluster made for the run."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as error:
        raise InvalidRequest(f"FANOUT_TASK_RUNNER=dask needs prefect-dask: {DASK_EXTRA_HINT}") from error
    if settings.dask_address:
        return DaskTaskRunner(address=settings.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs=local_cluster_options(settings),
    )


def local_cluster_options(settings: FlowSettings) -> dict[str, Any]:
    """Worker processes with `max_parallel` threads between them, no dashboard port."""
    workers = min(settings.dask_workers, settings.max_parallel)
    return {
        "n_workers": workers,
        "threads_per_worker": math.ceil(settings.max_parallel / workers),
        "processes": True,
        "dashboard_address": None,
    }


def check_runner(settings: FlowSettings) -> None:
    """Fail before any item runs when the chosen runner cannot be built, or cannot run the processor."""
    task_runner(settings)
    if settings.task_runner == "process" and processor_kind(load_processor(settings.processor)) == "async":
        raise InvalidProcessor(
            f"{settings.processor} is an async processor: it runs on an event loop (FANOUT_TASK_RUNNER=thread), "
            "not in worker processes"
        )

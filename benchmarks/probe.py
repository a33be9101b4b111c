"""Run one benchmark variant in this process and print its figures as JSON.

`python -m benchmarks.probe <variant> <count> [instance_id] [run_name]`; variants: threadpool,
naive, fanout, spare (the seed's flow in a process prepared as the warm worker's spare), floor (a flow that only returns the results), durable (a user's own flow that
calls `fanout.durable_map` on the seed's processor and returns the results), durable_count (the
same, returning their count). Imports happen before the clock starts (including the ones Prefect makes lazily
on a process's first flow call), so each variant is timed warm, in wall time and in the CPU time of
this process (all its threads: less shaken than wall time by other work on the machine). A sampler thread records the
peak thread count; peak RSS comes from the kernel. `run_name` names the flow run, so a watcher
can find it in the API; `FANOUT_BENCH_EXECUTED=<file>` writes the items this process executed
(with `FANOUT_PROCESSOR=benchmarks.processors:recorded`). Every variant starts its clock with the same heap:
what the imports left is collected, then frozen out of the garbage collector's scans (as the seed's flow
freezes it on a process's first run), so no variant pays a full collection over the import heap that
another is spared.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self


class ThreadSampler:
    """Samples `threading.active_count()` every few milliseconds and keeps the peak."""

    def __init__(self, interval: float = 0.005) -> None:
        self.peak = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, _os_threads())

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _os_threads() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return threading.active_count()


Run = Callable[[], list[Any]]


def threadpool(count: int, instance_id: str, run_name: str | None = None) -> Run:
    from fanout.engine.processor import processed

    def run() -> list[Any]:
        with ThreadPoolExecutor() as pool:
            return list(pool.map(processed, [f"item-{i}" for i in range(1, count + 1)]))

    return run


def warm_prefect() -> None:
    """Import what Prefect imports lazily on a process's first flow call (FastAPI's encoder, ~1.5 s)."""
    import fastapi.encoders  # noqa: F401


def naive(count: int, instance_id: str, run_name: str | None = None) -> Run:
    from prefect import flow, task

    from fanout.core.prefect_adapter import heartbeats_off
    from fanout.engine.processor import processed

    @task(persist_result=True)
    def process_item(item: str) -> str:
        return processed(item)

    @flow(name="naive-fan-out")
    def naive_flow(n: int) -> list[str]:
        return process_item.map([f"item-{i}" for i in range(1, n + 1)]).result()

    warm_prefect()
    named = naive_flow.with_options(flow_run_name=run_name) if run_name else naive_flow

    def run() -> list[Any]:
        with heartbeats_off():  # as fanout's run_here
            return named(count)

    return run


def floor(count: int, instance_id: str, run_name: str | None = None) -> Run:
    """A Prefect flow that only returns the N results: what any flow returning them costs."""
    from prefect import flow

    from fanout.core.prefect_adapter import heartbeats_off
    from fanout.engine.processor import processed

    @flow(name="floor", persist_result=True)
    def floor_flow(n: int) -> list[str]:
        return [processed(f"item-{i}") for i in range(1, n + 1)]

    warm_prefect()
    named = floor_flow.with_options(flow_run_name=run_name) if run_name else floor_flow

    def run() -> list[Any]:
        with heartbeats_off():
            return named(count)

    return run


def fanout(count: int, instance_id: str, run_name: str | None = None) -> Run:
    from fanout.inputs.request import FanoutRequest
    from fanout.seed import run_here

    warm_prefect()
    request = FanoutRequest(count=count, instance_id=instance_id)
    return lambda: run_here(request, flow_run_name=run_name)


def spare(count: int, instance_id: str, run_name: str | None = None) -> Run:
    """The seed's flow in a process prepared as the warm worker prepares its spare flow-run process: the
    forkserver's preload imported (the run-time modules, then the models built), then the spare's `prepare`
    (the API client entered, the log and event services started, the suspension observer opened)."""
    import importlib

    from fanout.inputs.request import FanoutRequest
    from fanout.seed import run_here
    from fanout.worker.warm_processes import preload_modules
    from fanout.worker.warm_spare import prepare

    for module in preload_modules():
        try:
            importlib.import_module(module)
        except ImportError:
            continue  # as the forkserver: a private module this Prefect does not have
    warm_prefect()
    prepared = prepare()
    request = FanoutRequest(count=count, instance_id=instance_id)

    def run() -> list[Any]:
        with prepared:
            return run_here(request, flow_run_name=run_name)

    return run


def durable(count: int, instance_id: str, run_name: str | None = None, whole: bool = True) -> Run:
    """A user's own flow, as a user writes it: a plain `@flow` returning `durable_map`'s results
    (`whole`), or only their count, which spares Prefect's walk of a returned list."""
    from prefect import flow

    from fanout import durable_map
    from fanout.core.prefect_adapter import heartbeats_off
    from fanout.engine.processor import processed

    @flow(name="user-flow")
    def user_flow(n: int, instance: str) -> list[str] | int:
        results = durable_map(processed, [f"item-{i}" for i in range(1, n + 1)], instance_id=instance)
        return results if whole else len(results)

    warm_prefect()
    named = user_flow.with_options(flow_run_name=run_name) if run_name else user_flow

    def run() -> Any:
        with heartbeats_off():  # as fanout's run_here
            return named(count, instance_id)

    return run


def durable_count(count: int, instance_id: str, run_name: str | None = None) -> Run:
    """`durable`, its flow returning the number of results."""
    return durable(count, instance_id, run_name, whole=False)


def write_executed() -> None:
    """Write the items the recording processor executed in this process, one per line."""
    target = os.environ.get("FANOUT_BENCH_EXECUTED")
    if target:
        from benchmarks.processors import EXECUTED

        with open(target, "w") as out:
            out.write("\n".join(EXECUTED))


VARIANTS: dict[str, Callable[..., Run]] = {
    "threadpool": threadpool,
    "naive": naive,
    "fanout": fanout,
    "spare": spare,
    "floor": floor,
    "durable": durable,
    "durable_count": durable_count,
}


def main() -> None:
    variant, count = sys.argv[1], int(sys.argv[2])
    instance_id = sys.argv[3] if len(sys.argv) > 3 else "bench"
    run_name = sys.argv[4] if len(sys.argv) > 4 else None
    run = VARIANTS[variant](count, instance_id, run_name)
    gc.collect()
    gc.freeze()
    with ThreadSampler() as sampler:
        started_at = time.time()
        started = time.perf_counter()
        cpu_started = time.process_time()
        output = run()
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    expected: Any = count if variant == "durable_count" else [f"Processed item-{i}" for i in range(1, count + 1)]
    assert output == expected, "wrong output"
    write_executed()
    print(
        json.dumps(
            {
                "variant": variant,
                "count": count,
                "seconds": seconds,
                "cpu_seconds": cpu_seconds,
                "started_at": started_at,
                "peak_threads": sampler.peak,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()

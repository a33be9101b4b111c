"""Run one benchmark variant in this process and print its figures as JSON.

`python -m benchmarks.probe <variant> <count> [instance_id]`; variants: threadpool, naive, fanout.
Imports happen before the clock starts. A sampler thread records the peak thread
count; peak RSS comes from the kernel.
"""

from __future__ import annotations

import json
import resource
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class ThreadSampler:
    """Samples `threading.active_count()` every few milliseconds and keeps the peak."""

    def __init__(self, interval: float = 0.005) -> None:
        self.peak = threading.active_count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.peak = max(self.peak, _os_threads())

    def __enter__(self) -> ThreadSampler:
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


def threadpool(count: int, instance_id: str) -> Run:
    from flows.processor import processed

    def run() -> list[Any]:
        with ThreadPoolExecutor() as pool:
            return list(pool.map(processed, [f"item-{i}" for i in range(1, count + 1)]))

    return run


def naive(count: int, instance_id: str) -> Run:
    from prefect import flow, task

    from flows.processor import processed

    @task(persist_result=True)
    def process_item(item: str) -> str:
        return processed(item)

    @flow(name="naive-fan-out")
    def naive_flow(n: int) -> list[str]:
        return process_item.map([f"item-{i}" for i in range(1, n + 1)]).result()

    return lambda: naive_flow(count)


def fanout(count: int, instance_id: str) -> Run:
    from flows.fanout import fan_out_fan_in
    from flows.request import FanoutRequest

    return lambda: fan_out_fan_in(FanoutRequest(count=count, instance_id=instance_id))


VARIANTS: dict[str, Callable[[int, str], Run]] = {
    "threadpool": threadpool, "naive": naive, "fanout": fanout,
}


def main() -> None:
    variant, count = sys.argv[1], int(sys.argv[2])
    instance_id = sys.argv[3] if len(sys.argv) > 3 else "bench"
    run = VARIANTS[variant](count, instance_id)
    with ThreadSampler() as sampler:
        started = time.perf_counter()
        output = run()
        seconds = time.perf_counter() - started
    assert output == [f"Processed item-{i}" for i in range(1, count + 1)], "wrong output"
    print(json.dumps({
        "variant": variant, "count": count, "seconds": seconds,
        "peak_threads": sampler.peak,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()

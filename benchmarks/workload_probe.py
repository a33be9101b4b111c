"""One workloads-benchmark variant, run in this process; prints its figures as one JSON line.

`python -m benchmarks.workload_probe <variant> <args...>`:

    gather <jsonl> <parallel>        asyncio.gather over the items' GETs, a semaphore of <parallel> slots
    fanout <jsonl> <instance>        the flow over a JSONL source (FANOUT_* from the environment)

The fanout variant warms Prefect first (a one-item run: the embedded server's
start is not the run's cost), then times `run_here`. Peak RSS is the kernel's
high-water mark of this process, CPU seconds its user + system time during the
timed part (an embedded Prefect server is another process, not counted).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """CPU time this process spent (user + system): what the client side cost, whatever else ran."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def gather(path: str, parallel: int) -> dict[str, Any]:
    from flows.http_enrich import Enrich

    with open(path, encoding="utf-8") as lines:
        items = [json.loads(line) for line in lines]
    enrich = Enrich()

    async def main() -> list[Any]:
        slots = asyncio.Semaphore(parallel)

        async def one(item: Any) -> Any:
            async with slots:
                return await enrich(item)

        return await asyncio.gather(*(one(item) for item in items), return_exceptions=True)

    started, cpu = time.perf_counter(), cpu_seconds()
    results = asyncio.run(main())
    failed = sum(1 for result in results if isinstance(result, BaseException))
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "items": len(results), "failed": failed}


def fanout(path: str, instance: str) -> dict[str, Any]:
    from benchmarks.processors import EXECUTED
    from fanout.inputs.request import FanoutRequest
    from fanout.inputs.sources import ItemSource
    from fanout.seed import run_here

    with open(path, encoding="utf-8") as lines:
        first = json.loads(lines.readline())
    run_here(FanoutRequest(items=[first], item_key="id", instance_id=f"{instance}-warm"))
    EXECUTED.clear()  # counts (and the crash trigger) start with the measured run
    request = FanoutRequest(
        source=ItemSource(uri=path, format="jsonl"),
        item_key="id",
        instance_id=instance,
        tolerated_failure_percentage=100,  # timed to the end like gather; failed items are counted, not raised
    )
    started, cpu = time.perf_counter(), cpu_seconds()
    output = run_here(request)
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    failed = sum(1 for value in output if value is None)
    return {"seconds": seconds, "cpu_seconds": cpu, "items": len(output), "executed": len(EXECUTED), "failed": failed}


def main(argv: list[str]) -> None:
    variant, *args = argv
    if variant == "gather":
        figures = gather(args[0], int(args[1]))
    elif variant == "fanout":
        figures = fanout(args[0], args[1])
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    figures["peak_rss_mib"] = peak_rss_mib()
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])

"""CPU-bound items, side by side in one run: where a processor that computes in Python gets its cores.

Each item costs about 25 ms of pure-Python arithmetic (`benchmarks.processors:burning`).
Variants, each in its own process, timed warm (imports before the clock):

- serial: a plain `for` loop;
- processpool: `ProcessPoolExecutor` with one process per core, in chunks (the floor);
- threadpool: `ThreadPoolExecutor(16)`;
- fanout thread: `fanout run` on threads (`FANOUT_TASK_RUNNER=thread`, `max_parallel` 8), the default: once
  the first batches show the items computing, the rest goes to worker processes;
- fanout thread only: the same with `FANOUT_CPU_BOUND_PROCESSES=false`, every item on threads;
- fanout process: `fanout run` on worker processes (`FANOUT_TASK_RUNNER=process`).

The fanout variants run in-process like `fanout run`, against one local Prefect server.
Every round runs each variant once, in a rotated order, so each sees the machine's load
as the others do; the table shows medians over rounds and each variant's items/s against
processpool's in the same round. CPU seconds are the variant's process and its children's.

Goals: fanout process >= 0.85x processpool's items/s; fanout thread no slower than serial.
CPU seconds include the worker processes'.

Run: `python -m benchmarks.cpu` (about 3 minutes on 2 idle cores; `--items`, `--rounds`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parent.parent
PROCESSOR = "benchmarks.processors:burning"
BASELINES = ("serial", "processpool", "threadpool")
FANOUT = {
    "fanout thread": {"FANOUT_TASK_RUNNER": "thread"},
    "fanout thread only": {"FANOUT_TASK_RUNNER": "thread", "FANOUT_CPU_BOUND_PROCESSES": "false"},
    "fanout process": {"FANOUT_TASK_RUNNER": "process"},
}
VARIANTS = (*BASELINES, *FANOUT)
FLOOR = "processpool"
THREADPOOL_WORKERS = 16


def cpu_seconds() -> float:
    """User + system time of this process and of its children that ended."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cores() -> int:
    return len(os.sched_getaffinity(0))


def baseline(variant: str, count: int) -> Callable[[], list[str]]:
    """One of the plain-Python variants, ready to time."""
    from benchmarks.processors import burning

    items = [f"item-{i}" for i in range(1, count + 1)]
    if variant == "serial":
        return lambda: [burning(item) for item in items]
    if variant == "processpool":

        def pooled() -> list[str]:
            with ProcessPoolExecutor(cores()) as pool:
                return list(pool.map(burning, items, chunksize=math.ceil(count / (cores() * 4))))

        return pooled

    def threaded() -> list[str]:
        with ThreadPoolExecutor(THREADPOOL_WORKERS) as pool:
            return list(pool.map(burning, items))

    return threaded


def fanout_run(count: int) -> Callable[[], list[Any]]:
    """`fanout run` of `count` items in this process, as the environment configures it."""
    import fastapi.encoders  # noqa: F401 - imported lazily by a process's first flow call

    from fanout.inputs.request import FanoutRequest
    from fanout.seed import run_here

    request = FanoutRequest(count=count, instance_id=f"cpu-{uuid.uuid4().hex[:8]}")
    return lambda: run_here(request)


def probe(variant: str, count: int) -> None:
    """Time one variant in this process and print its figures as JSON."""
    run = fanout_run(count) if variant in FANOUT else baseline(variant, count)
    cpu, started = cpu_seconds(), time.perf_counter()
    output = run()
    seconds, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    assert output == [f"Processed item-{i}" for i in range(1, count + 1)], "wrong output"
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu}))


def measure(variant: str, count: int, env: dict[str, str]) -> dict[str, float]:
    """One variant in a process of its own."""
    if variant in FANOUT:
        env = {**env, **FANOUT[variant]}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.cpu", "--probe", variant, "--items", str(count)],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probe", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        probe(args.probe, args.items)
        return
    from fanout.localstack.processes import running_prefect_server

    console = Console(width=140)
    rounds: list[dict[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="fanout-cpu-") as scratch_dir:
        scratch = Path(scratch_dir)
        with running_prefect_server(scratch / "prefect") as server:
            env = {
                **server.client_env(),
                "FANOUT_RESULT_STORAGE": str(scratch / "results"),
                "FANOUT_PROCESSOR": PROCESSOR,
                "PYTHONPATH": str(REPO_ROOT),
                "PREFECT_LOGGING_LEVEL": "WARNING",
            }
            measure("fanout thread", 5, env)  # warm the server
            for number in range(args.rounds):
                order = VARIANTS[number % len(VARIANTS) :] + VARIANTS[: number % len(VARIANTS)]
                console.log(f"round {number + 1} of {args.rounds}: {', '.join(order)}")
                rounds.append({variant: measure(variant, args.items, env) for variant in order})
    report(console, rounds, args.items)


def report(console: Console, rounds: list[dict[str, dict[str, float]]], count: int) -> None:
    table = Table(title=f"{count} CPU-bound items (~25 ms of Python each), {cores()} cores, medians of {len(rounds)}")
    for column in ("variant", "wall s", "items/s", f"vs {FLOOR}", "vs serial", "CPU s"):
        table.add_column(column, justify="right")
    ratios: dict[str, float] = {}
    for variant in VARIANTS:
        seconds = statistics.median(figures[variant]["seconds"] for figures in rounds)
        floor = statistics.median(figures[FLOOR]["seconds"] / figures[variant]["seconds"] for figures in rounds)
        serial = statistics.median(figures["serial"]["seconds"] / figures[variant]["seconds"] for figures in rounds)
        cpu = statistics.median(figures[variant]["cpu_seconds"] for figures in rounds)
        ratios[variant], ratios[f"{variant} vs serial"] = floor, serial
        table.add_row(
            variant, f"{seconds:.2f}", f"{count / seconds:.1f}", f"{floor:.2f}x", f"{serial:.2f}x", f"{cpu:.1f}"
        )
    console.print(table)
    console.print(
        f"fanout process: {ratios['fanout process']:.2f}x processpool's items/s (goal >= 0.85); "
        f"fanout thread: {ratios['fanout thread vs serial']:.2f}x serial's (goal >= 1.0; "
        f"{ratios['fanout thread only vs serial']:.2f}x with every item on threads); "
        f"load average now {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()

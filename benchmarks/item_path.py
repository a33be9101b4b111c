"""fanout's bookkeeping per item on a thread, outside Prefect, side by side with another checkout's.

One task run's body (`run_items`: attempt, checkpoint, count) over N trivial items into a fresh local
folder, and the stage's O(run) storage work around it: the plan, the output record and the results index
brought up to date after the items. Each variant runs in processes of its own (`PYTHONPATH` set to its
`src`), in alternating order; each process measures every step several times and keeps its fastest,
in CPU seconds of the process (less shaken than wall time by other work on the machine); the table shows
the median over processes.

Run: `python -m benchmarks.item_path --baseline DIR` (`git worktree add --detach DIR main`), about a
minute. `--items` and `--processes` change N (10,000) and the processes per variant (5).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

REPO_ROOT = Path(__file__).resolve().parent.parent
STEPS = ("run_items", "keep_plan", "save_output", "refresh_index")
REPEATS = 7


def measure(count: int) -> dict[str, float]:
    """Every step's fastest CPU time in this process, over `REPEATS` fresh folders."""
    from prefect.filesystems import LocalFileSystem

    from fanout.engine.item_path import ItemRun, run_items
    from fanout.engine.retry_policy import RetryPolicy
    from fanout.storage.instance_results import keep_plan, refresh_index

    noting: Callable[[], Any]
    try:
        from fanout.storage.written import noting_writes as noting
    except ImportError:  # a checkout from before the journals noted their records
        noting = contextlib.nullcontext
    items = [f"item-{index}" for index in range(1, count + 1)]
    best: dict[str, float] = {}

    def timed(step: str, action: Callable[..., Any], *args: Any) -> Any:
        started = time.process_time()
        result = action(*args)
        best[step] = min(best.get(step, float("inf")), time.process_time() - started)
        return result

    gc.collect()
    gc.freeze()
    for _ in range(REPEATS):
        with tempfile.TemporaryDirectory(prefix="fanout-item-path-") as folder:
            run = ItemRun("bench", "fanout.engine.processor:processed", LocalFileSystem(basepath=folder), RetryPolicy())
            timed("keep_plan", keep_plan, run.storage, run.instance_id, run.processor, items)
            with noting() as written:
                outcomes = timed("run_items", run_items, items, run, f"{items[0]}..{items[-1]}")
            output = [outcome.value for outcome in outcomes]
            timed("save_output", run.checkpoints().save_output, items, output)
            note = () if written is None else (written,)
            timed("refresh_index", refresh_index, run.storage, run.instance_id, *note)
    return best


def child_run(source: Path, count: int) -> dict[str, float]:
    """`measure` in a process of its own on the code under `source`."""
    env = {**os.environ, "PYTHONPATH": f"{source / 'src'}{os.pathsep}{REPO_ROOT}"}
    argv = [sys.executable, "-m", "benchmarks.item_path", "--child", "--items", str(count)]
    done = subprocess.run(argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {source} failed:\n{done.stderr[-3000:]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def report(console: Console, runs: dict[str, list[dict[str, float]]], count: int, load: tuple[float, float]) -> None:
    table = Table(
        title=f"{count:,} trivial items outside Prefect: CPU per step, median of {len(runs['this'])} processes"
    )
    table.add_column("step")
    for variant in runs:
        table.add_column(f"{variant} (ms)", justify="right")
    if "baseline" in runs:
        table.add_column("this / baseline", justify="right")
    for step in STEPS:
        medians = {variant: statistics.median(run[step] for run in figures) for variant, figures in runs.items()}
        row = [step, *(f"{medians[variant] * 1000:.2f}" for variant in runs)]
        if "baseline" in runs:
            row.append(f"{medians['this'] / medians['baseline']:.2f}")
        table.add_row(step, *row[1:])
    console.print(table)
    per_item = {
        variant: statistics.median(run["run_items"] for run in figures) / count for variant, figures in runs.items()
    }
    console.print(
        "run_items per item: "
        + ", ".join(f"{variant} {seconds * 1e6:.2f} µs" for variant, seconds in per_item.items())
        + f"; load average {load[0]:.1f} before, {load[1]:.1f} after"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--processes", type=int, default=5, help="processes per variant (default 5)")
    parser.add_argument("--baseline", type=Path, help="another checkout of the code (git worktree add DIR <commit>)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.items)))
        return
    sources = {"this": REPO_ROOT, **({"baseline": args.baseline.resolve()} if args.baseline else {})}
    runs: dict[str, list[dict[str, float]]] = {variant: [] for variant in sources}
    load_before = os.getloadavg()[0]
    for number in range(args.processes):
        order = list(sources) if number % 2 == 0 else list(reversed(sources))
        for variant in order:
            runs[variant].append(child_run(sources[variant], args.items))
    report(Console(width=160), runs, args.items, (load_before, os.getloadavg()[0]))


if __name__ == "__main__":
    main()

"""What `gc.freeze` at a flow's first run saves: garbage-collector pauses during a run's bookkeeping.

    .venv/bin/python -m benchmarks.gc_freeze [--items 10000] [--repeats 3]

Each variant runs in a fresh interpreter that imports the flow (so Prefect's
heap is alive, as in a flow-run process), optionally freezes it, then builds
what a run builds per item (an `ItemOutcome`, its checkpoint line, a
result) for `--items` items, and adds up the time Python's collector spent
(`gc.callbacks`). Printed side by side: collections, total pause, the longest
one, and the wall time of the bookkeeping. No Prefect server is needed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import gc, json, sys, time
import fanout.seed  # noqa: F401  (Prefect and the flow's modules: the heap a flow run has)
from fanout.storage import checkpoint_format
from fanout.core.outcome import ItemOutcome

items, freeze = int(sys.argv[1]), sys.argv[2] == "1"
if freeze:
    gc.freeze()
pauses, began = [], [0.0]

def watch(phase, info):
    if phase == "start":
        began[0] = time.perf_counter()
    else:
        pauses.append((info["generation"], time.perf_counter() - began[0]))

gc.callbacks.append(watch)
started = time.perf_counter()
outcomes = {}
for index in range(items):
    key = f"item-{index}"
    value = {"item": key, "result": f"Processed {key}", "tags": [index, str(index)]}
    checkpoint_format.encode(key, value)
    outcomes[key] = ItemOutcome(item=key, value=value, attempts=1, duration=0.001)
wall = time.perf_counter() - started
gc.callbacks.remove(watch)
print(json.dumps({
    "collections": len(pauses),
    "full": sum(1 for generation, _ in pauses if generation == 2),
    "pause_s": sum(pause for _, pause in pauses),
    "longest_s": max((pause for _, pause in pauses), default=0.0),
    "wall_s": wall,
}))
"""


def measure(items: int, freeze: bool) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(items), "1" if freeze else "0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.repeats):
        for freeze in (False, True):  # interleaved, so load changes hit both alike
            runs[freeze].append(measure(args.items, freeze))
    print(f"{args.items} items, median of {args.repeats} fresh interpreters each")
    print(f"{'':>14} {'collections':>12} {'full (gen 2)':>13} {'gc pause':>10} {'longest':>9} {'wall':>8}")
    for freeze in (False, True):
        med = {name: statistics.median(run[name] for run in runs[freeze]) for name in runs[freeze][0]}
        print(
            f"{'gc.freeze' if freeze else 'no freeze':>14} {med['collections']:>12.0f} {med['full']:>13.0f} "
            f"{med['pause_s'] * 1000:>8.1f}ms {med['longest_s'] * 1000:>7.1f}ms {med['wall_s'] * 1000:>6.0f}ms"
        )


if __name__ == "__main__":
    main()

"""The unit tier's wall and CPU time, this checkout beside another, side by side in one run.

Each round runs `python -m pytest -n N tests/unit` (what `make test-unit` runs, N 0) once in each
checkout, in a rotated order, so each sees the machine's load as the other does. A checkout runs its
own code: its `src` comes first on the path, before the package this virtualenv installed. CPU seconds
are the pytest process's and its children's (user + system). The table shows medians over rounds and
the test counts, which must not fall.

Goal: the tier in at most 20 s of wall time on an idle 2-core machine.

Run: `python -m benchmarks.unit_tier --baseline DIR` (a checkout of the code before, e.g.
`git worktree add --detach DIR main`); `--rounds`, `--processes 0,2` to time pytest-xdist too.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PASSED = re.compile(r"(\d+) passed")


@dataclass(frozen=True)
class Timing:
    """One run of the tier: wall and CPU seconds, tests passed, and whether pytest said all passed."""

    wall: float
    cpu: float
    passed: int
    ok: bool


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_tier(checkout: Path, processes: int) -> Timing:
    """Run the unit tier of `checkout` once in `processes` pytest-xdist processes (0: none)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(checkout / "src"), str(checkout)])}
    argv = [sys.executable, "-m", "pytest", "-n", str(processes), "tests/unit", "-q", "-p", "no:cacheprovider"]
    cpu, began = children_cpu(), time.perf_counter()
    done = subprocess.run(argv, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - began, children_cpu() - cpu
    found = PASSED.findall(done.stdout)
    return Timing(wall, cpu, int(found[-1]) if found else 0, done.returncode == 0)


def median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} [{min(values):.1f}-{max(values):.1f}]"


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, help="Another checkout to time beside this one.")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", default="0", help="pytest-xdist process counts to time, e.g. 0,2.")
    args = parser.parse_args()
    variants = [(name, path.resolve()) for name, path in (("this", REPO_ROOT), ("baseline", args.baseline)) if path]
    counts = [int(count) for count in args.processes.split(",")]
    runs = [(name, path, count) for name, path in variants for count in counts]
    timings: dict[tuple[str, int], list[Timing]] = {(name, count): [] for name, _, count in runs}
    print(f"load before: {load()}", flush=True)
    for round_number in range(args.rounds):
        shift = round_number % len(runs)
        for name, path, count in runs[shift:] + runs[:shift]:
            timing = run_tier(path, count)
            timings[name, count].append(timing)
            print(
                f"round {round_number + 1} {name} -n {count}: wall {timing.wall:.1f} s, CPU {timing.cpu:.1f} s, "
                f"{timing.passed} passed{'' if timing.ok else ' (NOT all passed)'}; load {load()}",
                flush=True,
            )
    print("\n| checkout | -n | wall s, median [range] | CPU s, median [range] | tests passed |")
    print("| --- | --- | --- | --- | --- |")
    for (name, count), series in timings.items():
        passed = sorted({timing.passed for timing in series})
        walls, cpus = [timing.wall for timing in series], [timing.cpu for timing in series]
        print(f"| {name} | {count} | {median(walls)} | {median(cpus)} | {', '.join(map(str, passed))} |")


if __name__ == "__main__":
    main()

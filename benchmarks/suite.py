"""What the test suite costs: its tests per tier, and the wall time of `make test` (or `.ci/run`) with the
machine's load average while it ran.

    .venv/bin/python -m benchmarks.suite [--command "make test"] [--counts-only] [--by-tier N]

Prints the tests in each tier's folder (one `pytest --collect-only`), then runs the command, sampling
the load average every 10 s, and prints its wall time, the CPU seconds of its processes (those it waited
for: not a background server left running), exit code, the load average's range and each pytest session's
summary line. On a shared machine the CPU seconds say more than the wall time, which others' work
stretches. `--server-starts N` times a Prefect server's start, with its CPU seconds, side by side on a
fresh SQLite database, on a copy of the suite's template whose server registers the block types again,
and on a copy whose server skips that (what the suite's servers start from, tests/support/database.py).
`--by-tier N` runs each tier alone instead, one after another, in N pytest-xdist processes: where the
suite's wall time and CPU go.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.proc import TICKS, process_stats
from fanout.localstack.processes import running_prefect_server

TIERS = ("unit", "integration", "e2e", "faults", "ui")
SUMMARY = re.compile(r"^=+ (.*(?:passed|failed|error|no tests ran).*) in [0-9.]+s.* =+$", re.M)


def tier_counts() -> dict[str, int]:
    """The tests each tier's folder holds, from one collection of the whole suite."""
    argv = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0"]
    listed = subprocess.run(argv, capture_output=True, text=True, check=False).stdout.splitlines()
    return {tier: sum(line.startswith(f"tests/{tier}/") for line in listed) for tier in TIERS}


def children_cpu_seconds() -> float:
    """User and system CPU seconds of this process's finished children, and theirs."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


KERNEL_THREAD = 0x00200000
"""PF_KTHREAD in a process's flags (/proc/PID/stat): a kernel thread, such as the memory monitor some virtual
machines run."""


@dataclass(frozen=True)
class MachineCpu:
    """CPU seconds the whole machine spent busy (every core, from /proc/stat), and those of its kernel
    threads, so far."""

    busy: float
    kernel_threads: float

    @classmethod
    def now(cls) -> MachineCpu:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return cls(busy=(sum(fields[:8]) - idle) / TICKS, kernel_threads=kernel_thread_seconds())

    def since(self, before: MachineCpu) -> MachineCpu:
        return MachineCpu(self.busy - before.busy, self.kernel_threads - before.kernel_threads)


def kernel_thread_seconds() -> float:
    """User and system CPU seconds of the kernel threads running now (they live as long as the machine)."""
    ticks = sum(int(fields[11]) + int(fields[12]) for fields in process_stats() if int(fields[6]) & KERNEL_THREAD)
    return ticks / TICKS


@dataclass(frozen=True)
class Timed:
    """What `timed` measured of one command."""

    seconds: float
    cpu: float
    machine: MachineCpu
    code: int
    loads: list[float]
    output: str


def timed(command: str) -> Timed:
    """Run `command` in a shell: its wall time, its CPU seconds, the machine's, its exit code, the 1-minute
    load averages seen, its output."""
    loads: list[float] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            loads.append(float(Path("/proc/loadavg").read_text().split()[0]))
            done.wait(10)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began, cpu_before, machine_before = time.monotonic(), children_cpu_seconds(), MachineCpu.now()
    run = subprocess.run(command, shell=True, capture_output=True, text=True, check=False)
    seconds, cpu = time.monotonic() - began, children_cpu_seconds() - cpu_before
    machine = MachineCpu.now().since(machine_before)
    done.set()
    sampler.join()
    return Timed(seconds, cpu, machine, run.returncode, loads, run.stdout + run.stderr)


SERVER_KINDS = ("fresh", "copied, registering", "copied")
"""A fresh database; a copy of the migrated template whose server registers the block types again (before
the template held them); a copy whose server skips that (what the suite's servers start from)."""


def server_starts(rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Seconds to a healthy server and CPU seconds of its whole life (start, health check, stop) for each of
    `SERVER_KINDS`, in turn, `rounds` each."""
    from tests.support.database import make_template, seed_database

    starts: dict[str, list[tuple[float, float]]] = {kind: [] for kind in SERVER_KINDS}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        template = make_template(root / "template")
        for index in range(rounds):
            for number, kind in enumerate(SERVER_KINDS):
                home = root / f"{number}-{index}"
                env = seed_database(home, template) if kind != "fresh" else {}
                if kind == "copied, registering":
                    env = {}
                began, cpu_before = time.monotonic(), children_cpu_seconds()
                with running_prefect_server(home, extra_env=env):
                    seconds = time.monotonic() - began
                starts[kind].append((seconds, children_cpu_seconds() - cpu_before))
    return starts


def report(command: str) -> None:
    """Run `command` and print its wall time, CPU seconds, the machine's, exit code, load average and
    pytest summaries."""
    run = timed(command)
    print(
        f"`{command}`: exit {run.code} in {run.seconds / 60:.1f} min, {run.cpu:.0f} CPU seconds, "
        f"load average {min(run.loads):.1f}-{max(run.loads):.1f}"
    )
    print(
        f"   the machine was busy {run.machine.busy:.0f} CPU seconds ({run.machine.busy / run.seconds:.2f} of "
        f"{os.cpu_count()} cores), {run.machine.kernel_threads:.0f} of them in kernel threads"
    )
    for summary in SUMMARY.findall(run.output):
        print("  ", summary, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--command", default="make test")
    parser.add_argument("--counts-only", action="store_true")
    parser.add_argument("--server-starts", type=int, default=0, metavar="N")
    parser.add_argument("--by-tier", type=int, default=0, metavar="N", help="each tier alone, in N processes")
    args = parser.parse_args()
    counts = tier_counts()
    print(
        "tests per tier:",
        ", ".join(f"{tier} {count}" for tier, count in counts.items()),
        "- total",
        sum(counts.values()),
    )
    if args.server_starts:
        for kind, starts in server_starts(args.server_starts).items():
            seconds = statistics.median(start[0] for start in starts)
            cpu = statistics.median(start[1] for start in starts)
            print(f"server start, {kind} database, median of {len(starts)}: {seconds:.2f} s, {cpu:.2f} CPU s")
    if args.counts_only:
        return
    if args.by_tier:
        for tier in TIERS:
            report(f"{sys.executable} -m pytest -n {args.by_tier} tests/{tier}")
        return
    report(args.command)


if __name__ == "__main__":
    main()

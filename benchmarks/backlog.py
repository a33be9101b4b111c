"""Backlog throughput: how many seed runs per second warm workers sustain, with one worker and with two.

    .venv/bin/python -m benchmarks.backlog [--runs 600] [--burst 200] [--workers 1,2] [--database sqlite|postgres]
                                           [--timeout 900] [--baseline DIR]

For each worker count, a fresh local stack (Prefect server, fanout's deployments, the webhook) in a
temporary folder, on SQLite or on a private PostgreSQL cluster: `--runs` seed starts
(`{"count": 5}`) are POSTed to the webhook in bursts of `--burst` concurrent requests, and once every
accepted start has its run in Prefect (the webhook's start queue is empty), the warm workers are
started. It prints, per worker count: starts accepted and lost (a 202 without a run, must be 0),
seconds from the workers' start to the last run Completed, sustained runs/s over that time, and
runs/s over the middle of the drain (the 10th to the 90th percentile of completions, without the
workers' start-up and the tail). The workers are those `fanout up` starts (`FANOUT_WORKER_LIMIT`
runs at once each). With `--baseline DIR` (e.g. `git worktree add DIR main`) the same drains follow
with the whole stack (server settings, automations, webhook, workers) running DIR's `src`, for a
before/after in one run: each variant runs in a process of its own whose `PYTHONPATH` puts its `src` first.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from benchmarks.startup import stop_stacks_on_sigterm
from fanout.localstack.polling import wait_for
from fanout.localstack.postgres import private_postgres
from fanout.localstack.stack import LocalStack

CLIENT_TIMEOUT = 120.0
SEED = {"count": 5}
REPOSITORY = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Drain:
    """One worker count's figures."""

    workers: int
    accepted: int
    lost: int
    completed: int
    seconds: float
    middle_rate: float

    @property
    def rate(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


async def post_burst(url: str, headers: dict[str, str], size: int) -> int:
    """`size` concurrent seed starts; how many were accepted (202)."""
    limits = httpx.Limits(max_connections=size)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=CLIENT_TIMEOUT, limits=limits) as client:

        async def one() -> int:
            try:
                return (await client.post("/api/start-fanout", json=SEED)).status_code
            except httpx.HTTPError:
                return 599

        codes = await asyncio.gather(*(one() for _ in range(size)))
    return sum(code == 202 for code in codes)


def wait_queue_empty(client: httpx.Client, timeout: float = 1800) -> None:
    """Until every accepted start has its run in Prefect."""
    wait_for(lambda: client.get("/health").json().get("queuedStarts") == 0, timeout, "the start queue to empty", 0.5)


def completed_count(api: httpx.Client) -> int:
    """How many flow runs are Completed: one cheap count, so the benchmark's own polling costs the server little."""
    body = {"flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
    return int(api.post("/flow_runs/count", json=body).json())


def run_states(api: httpx.Client) -> list[dict[str, Any]]:
    """Every flow run on the server: its state type and end time."""
    found: list[dict[str, Any]] = []
    while True:
        page = api.post("/flow_runs/filter", json={"limit": 200, "offset": len(found), "sort": "ID_DESC"}).json()
        found += page
        if len(page) < 200:
            return found


def completion_times(runs: list[dict[str, Any]]) -> list[float]:
    from datetime import datetime

    return sorted(
        datetime.fromisoformat(run["end_time"]).timestamp()
        for run in runs
        if run.get("state_type") == "COMPLETED" and run.get("end_time")
    )


def middle_rate(ends: list[float]) -> float:
    """Runs/s between the 10th and 90th percentile of completions."""
    if len(ends) < 10:
        return 0.0
    low, high = ends[len(ends) // 10], ends[(9 * len(ends)) // 10]
    return ((9 * len(ends)) // 10 - len(ends) // 10) / (high - low) if high > low else 0.0


@contextmanager
def stack_on(database: str) -> Iterator[LocalStack]:
    """A fresh stack without workers, on SQLite or a private PostgreSQL; stopped and removed at the end."""
    with tempfile.TemporaryDirectory(prefix="fanout-backlog-") as folder:
        if database == "postgres":
            with private_postgres() as cluster:
                yield from _started(Path(folder), cluster.database_url())
        else:
            yield from _started(Path(folder), None)


def _started(folder: Path, database_url: str | None) -> Iterator[LocalStack]:
    env = {**os.environ, "FANOUT_RESULT_STORAGE": str(folder / "results")}
    stack = LocalStack(home=folder / "stack", workdir=folder, database_url=database_url, env=env)
    stack.start(worker=False, server_timeout=600)
    try:
        yield stack
    finally:
        stack.stop()


def drain(workers: int, runs: int, burst: int, database: str, timeout: float) -> Drain:
    """Queue `runs` seed starts, then start `workers` warm workers and time the backlog's drain."""
    with stack_on(database) as stack:
        headers = stack.webhook_headers
        accepted = 0
        for _ in range(0, runs, burst):
            accepted += asyncio.run(post_burst(stack.webhook_url, headers, min(burst, runs - accepted)))
        with httpx.Client(base_url=stack.webhook_url, headers=headers, timeout=CLIENT_TIMEOUT) as client:
            wait_queue_empty(client)
        with httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=CLIENT_TIMEOUT) as api:
            lost = accepted - len(run_states(api))
            began = time.time()
            for _ in range(workers):
                stack.start_worker()
            with suppress(TimeoutError):  # a drain cut short is reported with what completed
                wait_for(lambda: completed_count(api) >= accepted, timeout, "every run to complete", interval=2)
            states = run_states(api)
            done = sum(run.get("state_type") == "COMPLETED" for run in states)
            ends = completion_times(states)
        seconds = (ends[-1] - began) if ends else 0.0
        return Drain(workers, accepted, lost, done, seconds, middle_rate(ends))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=600)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--workers", default="1,2", help="Worker counts to compare, comma-separated.")
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--timeout", type=float, default=900.0, help="Longest wait for one drain, in seconds.")
    parser.add_argument("--baseline", type=Path, help="A checkout whose src/ the whole stack runs, after this one's.")
    parser.add_argument("--variant", default="this checkout", help=argparse.SUPPRESS)  # the name printed
    options = parser.parse_args()
    stop_stacks_on_sigterm()
    if options.baseline:
        compare(options)
        return
    print(f"load average at start: {os.getloadavg()[0]:.1f}; {os.cpu_count()} cores; {options.database}", flush=True)
    rows = []
    for workers in (int(part) for part in options.workers.split(",")):
        row = drain(workers, options.runs, options.burst, options.database, options.timeout)
        rows.append(row)
        print(
            f"{options.variant}, {row.workers} warm worker(s): accepted {row.accepted}, lost {row.lost}, "
            f"Completed {row.completed} in {row.seconds:.1f} s: {row.rate:.2f} runs/s sustained, "
            f"{row.middle_rate:.2f} runs/s mid-drain (load average now {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    if len(rows) > 1 and rows[0].rate:
        ratios = ", ".join(f"{row.workers}: {row.rate / rows[0].rate:.2f}x" for row in rows[1:])
        print(f"{options.variant}: runs/s against {rows[0].workers} worker(s): {ratios}")


def compare(options: argparse.Namespace) -> None:
    """This checkout's drains, then the baseline's, each in a process whose `PYTHONPATH` puts its `src` first."""
    argv = [sys.executable, "-m", "benchmarks.backlog", "--runs", str(options.runs), "--burst", str(options.burst)]
    argv += ["--workers", options.workers, "--database", options.database, "--timeout", str(options.timeout)]
    for name, checkout in {"this checkout": REPOSITORY, "baseline": options.baseline}.items():
        python_path = os.pathsep.join([str(checkout.resolve() / "src"), str(REPOSITORY)])
        env = {**os.environ, "PYTHONPATH": python_path}
        subprocess.run([*argv, "--variant", name], env=env, cwd=REPOSITORY, check=True)


if __name__ == "__main__":
    main()

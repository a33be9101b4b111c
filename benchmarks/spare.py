"""The warm worker with and without its spare flow-run process, side by side in one run.

    .venv/bin/python -m benchmarks.spare [--rounds 3] [--runs 5]

Starts `fanout up`'s stack (server, deployments, webhook) once, then, `--rounds` times, a warm worker
with `FANOUT_WARM_SPARE=true` and one with `false`, one after the other, each timing `--runs` seed
runs (after one warm-up run): POST /api/start-fanout -> the status URL's 200 (polled every 0.1 s),
and, from each run's state history in Prefect, POST -> Submitting (the webhook and the worker's submit
path), Submitting -> Running (the worker handing the run to its process until the engine's Running:
the fork or hand-over and the process's own start), Pending -> Running and Running -> Completed (the
flow). Prints p50/p95 of each per variant and the spare's saving at p50.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import datetime
from typing import Any

import httpx

from benchmarks.startup import percentile, post_to_200
from fanout.localstack.stack import temporary_stack

VARIANTS = {"spare": "true", "fork per run": "false"}


def state_times(api: httpx.Client, posted: float) -> dict[str, float]:
    """Where the newest flow run's time went: POST -> Submitting (the webhook and the worker), Submitting ->
    Running (the run's process), Pending -> Running, Running -> Completed (the flow)."""
    run = api.post("/flow_runs/filter", json={"sort": "EXPECTED_START_TIME_DESC", "limit": 1}).json()[0]
    states = api.get("/flow_run_states/", params={"flow_run_id": run["id"]}).json()
    first: dict[str, datetime] = {}
    for state in sorted(states, key=lambda state: state["timestamp"]):
        first.setdefault(state["name"], datetime.fromisoformat(state["timestamp"]))
    return {
        "POST -> Submitting": first["Submitting"].timestamp() - posted,
        "Submitting -> Running": (first["Running"] - first["Submitting"]).total_seconds(),
        "Pending -> Running": (first["Running"] - first["Pending"]).total_seconds(),
        "Running -> Completed": (first["Completed"] - first["Running"]).total_seconds(),
    }


def measure(client: httpx.Client, api: httpx.Client, runs: int) -> dict[str, list[float]]:
    """One warm-up run, then `runs` timed runs."""
    post_to_200(client)
    figures: dict[str, list[float]] = {}
    for _ in range(runs):
        posted = time.time()
        total = post_to_200(client)
        for name, value in {"POST -> 200": total, **state_times(api, posted)}.items():
            figures.setdefault(name, []).append(value)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="worker starts per variant, interleaved")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per worker start (after one warm-up)")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    results: dict[str, dict[str, list[float]]] = {variant: {} for variant in VARIANTS}
    with (
        temporary_stack("fanout-spare-") as stack,
        httpx.Client(base_url=stack.webhook_url, headers=stack.webhook_headers, timeout=60) as client,
        httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=60) as api,
    ):
        for _ in range(args.rounds):
            for variant, flag in VARIANTS.items():
                worker = stack.start_worker(env={"FANOUT_WARM_SPARE": flag})
                try:
                    for name, values in measure(client, api, args.runs).items():
                        results[variant].setdefault(name, []).extend(values)
                finally:
                    stack.stop_worker(worker)
    report(results)


def report(results: dict[str, dict[str, Any]]) -> None:
    print(f"{'':<24} {'variant':<14} {'n':>3} {'p50 s':>7} {'p95 s':>7}")
    for name in results["spare"]:
        medians = {}
        for variant, figures in results.items():
            values = figures[name]
            medians[variant] = statistics.median(values)
            print(
                f"{name:<24} {variant:<14} {len(values):>3} {medians[variant]:>7.3f} {percentile(values, 0.95):>7.3f}"
            )
        print(f"{'':<24} {'saved at p50':<14} {'':>3} {medians['fork per run'] - medians['spare']:>7.3f}")


if __name__ == "__main__":
    main()

"""The webhook starter against a local stack: latency to 202, bursts, and one instance started at once.

    .venv/bin/python -m benchmarks.starter [--requests 500] [--concurrency 20] [--bursts 5] [--burst 200]
                                           [--complete-timeout 0]

Starts a fresh local stack (Prefect server on SQLite, fanout's deployments, the
webhook under uvicorn) in a temporary folder, with no worker, and prints:

- POST /api/start-fanout -> 202: p50/p99/max over `--requests` sequential
  requests, then the same number from `--concurrency` concurrent clients, and
  how many were not 202 (5xx counted apart);
- `--bursts` bursts of `--burst` concurrent POSTs with distinct Idempotency-Keys
  on one webhook: accepted/refused/5xx, p50/p99 to the answer, then (once the
  webhook's start queue is empty) the runs Prefect holds for accepted starts,
  the orphan runs (a run for a start that was not answered 202: must be 0), and
  the slowest answer of /health and a status URL after the bursts;
- 50 concurrent starts of one instance id: 202s, 409s and runs created (must be 1);
- with `--complete-timeout N`, a worker is started and the accepted runs of the
  bursts are followed for up to N s: how many reached Completed.

The server's late-runs service is switched off: marking a thousand unstarted
runs Late every few seconds locks SQLite and measures that service, not the
starter. POST -> Completed is `benchmarks/startup.py`'s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from contextlib import suppress
from typing import Any

import httpx

from fanout.localstack.polling import wait_for
from fanout.localstack.stack import LocalStack, temporary_stack

CLIENT_TIMEOUT = 120.0
"""Generous, so slow answers are measured rather than cut off."""


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] if ordered else float("nan")


def ms(seconds: float) -> str:
    return f"{1000 * seconds:8.1f}"


async def post_many(
    url: str, headers: dict[str, str], count: int, concurrency: int, body: Any = None, keyed: str | None = None
) -> list[tuple[float, int, dict[str, Any]]]:
    """`count` POSTs, `concurrency` at a time: (seconds to the answer, status, JSON body) each."""
    gate = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=CLIENT_TIMEOUT, limits=limits) as client:

        async def one(index: int) -> tuple[float, int, dict[str, Any]]:
            extra = {"Idempotency-Key": f"{keyed}-{index}"} if keyed else {}
            async with gate:
                began = time.perf_counter()
                try:
                    response = await client.post("/api/start-fanout", json=body, headers=extra)
                except httpx.HTTPError:
                    return time.perf_counter() - began, 599, {}
                return time.perf_counter() - began, response.status_code, response.json()

        return list(await asyncio.gather(*(one(index) for index in range(count))))


def latency_row(name: str, results: list[tuple[float, int, dict[str, Any]]]) -> str:
    seconds = [result[0] for result in results]
    codes = [result[1] for result in results]
    not_202 = sum(code != 202 for code in codes)
    server_errors = sum(code >= 500 for code in codes)
    return (
        f"{name:<26} {len(results):>5} {ms(statistics.median(seconds))} {ms(percentile(seconds, 0.99))} "
        f"{ms(max(seconds))}   not 202: {not_202} (5xx: {server_errors})"
    )


def sequential(url: str, headers: dict[str, str], count: int) -> list[tuple[float, int, dict[str, Any]]]:
    return asyncio.run(post_many(url, headers, count, 1))


def wait_queue_empty(client: httpx.Client, timeout: float = 1800) -> float:
    """Seconds until the webhook's start queue is empty (every accepted start has its run)."""
    began = time.monotonic()
    wait_for(lambda: client.get("/health").json().get("queuedStarts") == 0, timeout, "the start queue to empty", 0.2)
    return time.monotonic() - began


def instances_in_prefect(api: httpx.Client) -> dict[str, list[str]]:
    """Every fanout flow run's instance id -> its flow run ids and states."""
    found: dict[str, list[str]] = {}
    offset = 0
    while page := api.post("/flow_runs/filter", json={"limit": 200, "offset": offset}).json():
        for run in page:
            instance = (run.get("labels") or {}).get("fanout.instance")
            if instance:
                found.setdefault(instance, []).append(run["state"]["type"])
        offset += len(page)
    return found


def delete_runs_except(api: httpx.Client, keep: set[str]) -> int:
    """Delete every flow run whose instance is not in `keep`; how many."""
    doomed: list[str] = []
    offset = 0
    while page := api.post("/flow_runs/filter", json={"limit": 200, "offset": offset}).json():
        doomed += [run["id"] for run in page if (run.get("labels") or {}).get("fanout.instance") not in keep]
        offset += len(page)
    for flow_run_id in doomed:
        api.delete(f"/flow_runs/{flow_run_id}")
    return len(doomed)


def slowest_answer(client: httpx.Client, status_url: str, repeats: int = 10) -> float:
    worst = 0.0
    for _ in range(repeats):
        for path in ("/health", status_url):
            began = time.perf_counter()
            client.get(path)
            worst = max(worst, time.perf_counter() - began)
    return worst


def bursts(stack: LocalStack, headers: dict[str, str], count: int, size: int) -> set[str]:
    """The bursts on one webhook, back to back, once the earlier phases' starts have their runs;
    returns the accepted instance ids."""
    with (
        httpx.Client(base_url=stack.webhook_url, headers=headers, timeout=CLIENT_TIMEOUT) as client,
        httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=CLIENT_TIMEOUT) as api,
    ):
        print(f"(start queue of the latency phases emptied in {wait_queue_empty(client):.1f} s)", flush=True)
        earlier = set(instances_in_prefect(api))  # the latency phases' runs: not the bursts' to account for
    accepted: set[str] = set()
    refused: set[int] = set()
    print(f"\n{'burst of ' + str(size):<14} {'202':>5} {'429':>5} {'5xx':>5} {'p50 ms':>8} {'p99 ms':>8}", flush=True)
    for number in range(1, count + 1):
        results = asyncio.run(post_many(stack.webhook_url, headers, size, size, {"count": 1}, keyed=f"b{number}"))
        codes = [result[1] for result in results]
        seconds = [result[0] for result in results]
        accepted |= {body["id"] for _, code, body in results if code == 202}
        refused |= {index for index, code in enumerate(codes) if code != 202}
        print(
            f"{'#' + str(number):<14} {codes.count(202):>5} {codes.count(429):>5} "
            f"{sum(code >= 500 for code in codes):>5} {ms(statistics.median(seconds))} "
            f"{ms(percentile(seconds, 0.99))}",
            flush=True,
        )
    with (
        httpx.Client(base_url=stack.webhook_url, headers=headers, timeout=CLIENT_TIMEOUT) as client,
        httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=CLIENT_TIMEOUT) as api,
    ):
        drained = wait_queue_empty(client)
        in_prefect = instances_in_prefect(api)
        created = sum(1 for instance in accepted if instance in in_prefect)
        orphans = sum(len(runs) for instance, runs in in_prefect.items() if instance not in accepted | earlier)
        worst = slowest_answer(client, f"/api/instances/{next(iter(accepted))}") if accepted else float("nan")
    print(
        f"accepted {len(accepted)}, their runs in Prefect {created} (start queue empty {drained:.1f} s after the "
        f"last burst), orphan runs {orphans}, slowest answer after the bursts {1000 * worst:.0f} ms",
        flush=True,
    )
    return accepted


def one_instance(stack: LocalStack, headers: dict[str, str], starts: int = 50) -> None:
    results = asyncio.run(post_many(stack.webhook_url, headers, starts, starts, {"instance_id": "only-once"}))
    codes = [result[1] for result in results]
    with httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=CLIENT_TIMEOUT) as api:
        runs = instances_in_prefect(api).get("only-once", [])
    print(
        f"\n{starts} concurrent starts of one instance: 202 x{codes.count(202)}, 409 x{codes.count(409)}, "
        f"other {len(codes) - codes.count(202) - codes.count(409)}; runs created: {len(runs)}",
        flush=True,
    )


def completed(stack: LocalStack, accepted: set[str], timeout: float) -> None:
    """Start a worker and count the bursts' accepted runs that reach Completed within `timeout`.

    The earlier phases' runs are deleted first: they only measured the 202, and a worker takes
    the oldest scheduled runs first, so it would spend the whole timeout on them.
    """
    with httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=CLIENT_TIMEOUT) as api:
        deleted = delete_runs_except(api, accepted)
    print(f"(deleted the {deleted} runs of the latency phases and the one-instance starts)", flush=True)
    stack.start_worker()
    done = 0
    with httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=CLIENT_TIMEOUT) as api:

        def all_completed() -> bool:
            nonlocal done
            states = instances_in_prefect(api)
            done = sum(1 for instance in accepted if "COMPLETED" in states.get(instance, []))
            return done == len(accepted)

        with suppress(TimeoutError):  # the count says how many made it
            wait_for(all_completed, timeout, "every accepted run to complete", interval=2)
    print(f"accepted runs Completed within {timeout:.0f} s: {done} of {len(accepted)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--complete-timeout", type=float, default=0, help="follow the burst runs to Completed")
    args = parser.parse_args()
    os.environ["PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED"] = "false"
    with temporary_stack("fanout-bench-", server_timeout=180.0) as stack:
        headers = stack.webhook_headers
        sequential(stack.webhook_url, headers, 20)  # warm-up
        print(f"{'POST -> 202':<26} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}", flush=True)
        print(latency_row("sequential", sequential(stack.webhook_url, headers, args.requests)), flush=True)
        concurrent = asyncio.run(post_many(stack.webhook_url, headers, args.requests, args.concurrency))
        print(latency_row(f"concurrent x{args.concurrency}", concurrent), flush=True)
        print(
            f"concurrent throughput: {len(concurrent) / max(sum(r[0] for r in concurrent) / args.concurrency, 1e-9):.1f} starts/s",
            flush=True,
        )
        accepted = bursts(stack, headers, args.bursts, args.burst)
        one_instance(stack, headers)
        if args.complete_timeout > 0:
            completed(stack, accepted, args.complete_timeout)


if __name__ == "__main__":
    main()

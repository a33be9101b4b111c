"""Starter latency against the local stack: POST -> 202 (sequential and concurrent), POST -> status 200.

    .venv/bin/python -m benchmarks.starter [--requests 500] [--concurrency 20] [--runs 3]

Starts a fresh local stack (Prefect server on SQLite, `prefect deploy --all`, the
webhook under uvicorn) in a temporary folder. The latency phases run while no
worker is polling, so the 1,000 started runs stay Scheduled (they are deleted
afterwards). The server's late-runs service is switched off for the benchmark:
marking a thousand unstarted runs Late every few seconds locks SQLite and slowed
every POST to ~1 s on a loaded 2-core machine, which measures that service, not
the starter. Then a worker starts and the seed's 5-item run is timed from POST
to the status URL answering 200, polled every 0.1 s (a client honouring
`Retry-After: 1` sees up to 1 s more).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from deployments.stack import LocalStack


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


CLIENT_TIMEOUT = 120.0
"""Generous, so slow answers are measured rather than cut off; anything but 202 counts as a failure."""


def sequential(url: str, headers: dict[str, str], requests: int) -> tuple[list[float], list[str]]:
    latencies, failures = [], []
    with httpx.Client(base_url=url, headers=headers, timeout=CLIENT_TIMEOUT) as client:
        for _ in range(requests):
            began = time.perf_counter()
            try:
                response = client.post("/api/start-fanout")
                if response.status_code != 202:
                    failures.append(f"{response.status_code}: {response.text[:120]}")
            except httpx.HTTPError as error:
                failures.append(type(error).__name__)
            latencies.append(time.perf_counter() - began)
    return latencies, failures


def concurrent(
    url: str, headers: dict[str, str], requests: int, concurrency: int
) -> tuple[list[float], list[str], float]:
    async def main() -> tuple[list[float], list[str], float]:
        gate = asyncio.Semaphore(concurrency)
        limits = httpx.Limits(max_connections=concurrency)
        failures: list[str] = []
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=CLIENT_TIMEOUT, limits=limits) as client:
            async def one() -> float:
                async with gate:
                    began = time.perf_counter()
                    try:
                        response = await client.post("/api/start-fanout")
                        if response.status_code != 202:
                            failures.append(f"{response.status_code}: {response.text[:120]}")
                    except httpx.HTTPError as error:
                        failures.append(type(error).__name__)
                    return time.perf_counter() - began
            began = time.perf_counter()
            latencies = await asyncio.gather(*(one() for _ in range(requests)))
            return list(latencies), failures, time.perf_counter() - began
    return asyncio.run(main())


def delete_scheduled(api_url: str) -> int:
    deleted = 0
    with httpx.Client(base_url=api_url, timeout=60) as client:
        while True:
            runs = client.post("/flow_runs/filter", json={"limit": 200}).json()
            pending = [run for run in runs if run["state"]["type"] == "SCHEDULED"]
            if not pending:
                return deleted
            for run in pending:
                client.delete(f"/flow_runs/{run['id']}")
                deleted += 1


def post_to_200(url: str, headers: dict[str, str]) -> float:
    with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
        began = time.perf_counter()
        status_url = client.post("/api/start-fanout").json()["statusQueryGetUri"]
        while True:
            response = client.get(status_url)
            if response.status_code == 200:
                assert response.json()["output"] == [f"Processed item-{i}" for i in range(1, 6)], response.text
                return time.perf_counter() - began
            time.sleep(0.1)


def row(name: str, latencies: list[float]) -> str:
    return (f"{name:<28} {len(latencies):>5} {1000 * statistics.median(latencies):>9.1f} "
            f"{1000 * percentile(latencies, 0.99):>9.1f} {1000 * max(latencies):>9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3, help="5-item runs timed POST -> 200")
    args = parser.parse_args()
    os.environ["PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED"] = "false"
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as folder:
        stack = LocalStack(home=Path(folder))
        try:
            stack.start_server()
            stack.deploy()
            stack.start_webhook()
            headers = {"Authorization": f"Bearer {stack.token}"}
            sequential(stack.webhook_url, headers, 20)  # warm-up
            print(f"{'POST /api/start-fanout -> 202':<28} {'n':>5} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9}", flush=True)
            seq, seq_failed = sequential(stack.webhook_url, headers, args.requests)
            print(row("sequential", seq) + f"   failures: {len(seq_failed)} {sorted(set(seq_failed))[:3]}", flush=True)
            conc, conc_failed, wall = concurrent(stack.webhook_url, headers, args.requests, args.concurrency)
            print(row(f"concurrent x{args.concurrency}", conc)
                  + f"   failures: {len(conc_failed)} {sorted(set(conc_failed))[:3]}", flush=True)
            print(f"concurrent throughput: {args.requests / wall:.1f} starts/s", flush=True)
            print(f"deleted {delete_scheduled(stack.api_url)} scheduled runs", flush=True)
            stack.start_worker()
            post_to_200(stack.webhook_url, headers)  # warm-up: first flow process imports cold
            seeds = [post_to_200(stack.webhook_url, headers) for _ in range(args.runs)]
            print("5-item seed run, POST -> status 200: " + ", ".join(f"{s:.2f} s" for s in seeds)
                  + f" (median {statistics.median(seeds):.2f} s)", flush=True)
        finally:
            stack.stop()


if __name__ == "__main__":
    main()

"""Figures for what users see: the seed scenario's POST -> 200 time on SQLite vs PostgreSQL, and artifact sizes.

    .venv/bin/python -m benchmarks.ui_figures [--repeats 5] [--items 10000]

1. One local stack (Prefect server, deployment, one process worker, webhook;
   src/fanout/localstack/stack.py) per database, both up at once; after a warm-up run on
   each, the seed scenario (5 items) is POSTed `--repeats` times to each in turns,
   and its status URL polled every 50 ms (not the advised Retry-After, which would
   round every figure up to a second) until it answers 200. Printed side by side.
2. A run of `--items` items (trivial processor, 1% failing) against a SQLite
   server, then the stored size of its artifacts: the item table past the
   default `report_table_limit` (failures only), the full table with the limit
   raised to `--items`, and the metrics markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from fanout.engine.report import artifact_key
from fanout.localstack.postgres import private_postgres
from fanout.localstack.processes import running_prefect_server
from fanout.localstack.stack import LocalStack

REPO_ROOT = Path(__file__).resolve().parent.parent
TOKEN = "benchmark-webhook-token-0123456789"


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FANOUT_", "PREFECT_API"))}
    return {**env, "PYTHONPATH": str(REPO_ROOT), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def post_to_200(client: httpx.Client, instance: str) -> float:
    """Seconds from POST /api/start-fanout to the status URL's 200."""
    started = time.perf_counter()
    accepted = client.post("/api/start-fanout", json={"instance_id": instance})
    accepted.raise_for_status()
    status_url = accepted.json()["statusQueryGetUri"]
    while True:
        response = client.get(status_url)
        if response.status_code == 200:
            assert response.json()["output"] == [f"Processed item-{i}" for i in range(1, 6)], response.text
            return time.perf_counter() - started
        if response.status_code != 202:
            raise RuntimeError(f"status {response.status_code}: {response.text}")
        time.sleep(0.05)


def seed_times(database_urls: dict[str, str | None], repeats: int, root: Path) -> dict[str, list[float]]:
    """POST -> 200 times of the seed scenario, one local stack per database, all up at once and
    measured in turns (SQLite, PostgreSQL, SQLite, ...) so that load from elsewhere hits both alike."""
    stacks = {
        name: LocalStack(home=root / name, database_url=url, env=_clean_env(), token=TOKEN)
        for name, url in database_urls.items()
    }
    times: dict[str, list[float]] = {name: [] for name in stacks}
    clients: dict[str, httpx.Client] = {}
    try:
        for name, stack in stacks.items():
            stack.start()
            clients[name] = httpx.Client(
                base_url=stack.webhook_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
            )
            post_to_200(clients[name], "warm-up")
        for index in range(repeats):
            for name, client in clients.items():
                times[name].append(post_to_200(client, f"seed-{index}-{time.time_ns()}"))
        return times
    finally:
        for client in clients.values():
            client.close()
        for stack in stacks.values():
            stack.stop()


def artifact_bytes(api_url: str, key: str) -> int:
    """Stored size of the newest artifact under `key`: its `data` as the API returns it."""
    body = {"artifacts": {"key": {"any_": [key]}}, "sort": "CREATED_DESC", "limit": 1}
    [artifact] = httpx.post(f"{api_url}/artifacts/filter", json=body, timeout=60).json()
    data = artifact["data"]
    return len((data if isinstance(data, str) else json.dumps(data)).encode())


def artifact_sizes(items: int, home: Path) -> dict[str, int]:
    """Artifact sizes of `items`-item runs, with the default table limit and with every item listed."""
    sizes: dict[str, int] = {}
    with running_prefect_server(home / "prefect") as server:
        for label, limit in (("default limit", None), ("every item", items)):
            instance = f"sizes-{'full' if limit else 'default'}"
            env = {
                **_clean_env(),
                **server.client_env(),
                "PYTHONPATH": str(REPO_ROOT),
                "FANOUT_PROCESSOR": "benchmarks.processors:failing_one_in_a_hundred",
                "FANOUT_RESULT_STORAGE": str(home / f"results-{instance}"),
                "FANOUT_RETRY_DELAY_SECONDS": "0",
            }
            if limit:
                env["FANOUT_REPORT_TABLE_LIMIT"] = str(limit)
            subprocess.run(
                [sys.executable, "-m", "fanout.cli.cli", "run", "--count", str(items), "--instance-id", instance],
                check=False,
                env=env,
                cwd=REPO_ROOT,
                capture_output=True,
                timeout=1800,
            )  # exit 1: items failed
            sizes[f"item table, {label}"] = artifact_bytes(server.api_url, artifact_key(instance, "items"))
            sizes[f"metrics markdown, {label}"] = artifact_bytes(server.api_url, artifact_key(instance, "metrics"))
    return sizes


def summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f}  min {min(values):.3f}  max {max(values):.3f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--items", type=int, default=10_000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as scratch:
        root = Path(scratch)
        with private_postgres() as cluster:
            times = seed_times({"SQLite": None, "PostgreSQL": cluster.database_url()}, args.repeats, root)
        print(
            f"\nseed scenario, POST /api/start-fanout -> status 200, {args.repeats} sequential runs after a warm-up (s)"
        )
        for name, values in times.items():
            print(f"  {name:<11} {summary(values)}   runs: {', '.join(f'{v:.3f}' for v in values)}")
        ratio = statistics.median(times["PostgreSQL"]) / statistics.median(times["SQLite"])
        print(f"  PostgreSQL / SQLite (median): {ratio:.2f}")
        sizes = artifact_sizes(args.items, root / "sizes")
        print(f"\nartifact sizes at N={args.items} (1% of items failing), bytes of stored data")
        for name, size in sizes.items():
            print(f"  {name:<34} {size:>10,}")


if __name__ == "__main__":
    main()

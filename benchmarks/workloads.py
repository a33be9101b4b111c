"""Workload figures (issue 14), side by side in one run.

(a) 10,000 items, each awaiting a 50 ms reply from a real local HTTP service
    (tests/support/echo_service.py, its own process): plain `asyncio.gather` with a
    1,000-slot semaphore; fanout with the async processor and max_parallel 1,000;
    fanout with the same call on threads (max_parallel 512, the thread ceiling).
    Goal: fanout async >= 50% of gather's items/s.
(b) 1,000,000 items from a JSONL source, trivial processor: wall time, items/s,
    peak RSS of the flow process (goal <= 1.5 GiB); then the same instance
    killed (SIGKILL of its process group, from inside) once half its items ran,
    and resumed: how many items the resume executed against how many had no
    checkpoint when it died.
(c) Reading page 50 of the results of a 100,000-item run (limit 100 and 1,000;
    median of 5 reads), through the results index, beside a scan of every
    journal for the page's keys (the design before the index). Goal <= 100 ms.

Each fanout run is its own process (benchmarks/workload_probe.py), warmed by a
one-item run before the clock starts: on an embedded Prefect with its own home
in (a) and (c), against one `prefect server start` shared by (b)'s three runs.

Run: `python -m benchmarks.workloads` (several minutes on 2 cores);
`--quick` uses 100,000 items in (b) and 20,000 in (c); `--http-items N` sizes (a) on a busy machine.
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
from typing import Any, Self

import httpx

from fanout.localstack.polling import wait_for
from fanout.localstack.processes import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
TRIVIAL = "benchmarks.processors:recorded"
SERVICE = [sys.executable, "-m", "tests.support.echo_service"]
SERVICE_WORKERS = 2  # the service's processes: enough that it answers faster than one client asks


class EchoService:
    """The local test service in its own process, stopped on exit whatever happens."""

    def __init__(self, delay: float) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [*SERVICE, "--port", str(self.port), "--delay", str(delay), "--workers", str(SERVICE_WORKERS)],
            cwd=REPO_ROOT,
        )

    def __enter__(self) -> Self:
        try:
            wait_for(self._answers, 30, "the echo service to start")
        except TimeoutError:
            self.__exit__()
            raise
        return self

    def _answers(self) -> bool:
        try:
            return httpx.get(f"{self.base}/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def probe(scratch: Path, *args: str, **env: str) -> dict[str, Any]:
    """Run one variant in a fresh process (its own process group, so a kill takes only it)."""
    environment = {
        **os.environ,
        "PREFECT_HOME": str(scratch / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "FANOUT_RESULT_STORAGE": str(scratch / "results"),
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.workload_probe", *args],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        start_new_session=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"exit {done.returncode}: {done.stderr[-2000:]}", "returncode": done.returncode}
    return {**json.loads(lines[-1]), "returncode": done.returncode}


def write_jsonl(path: Path, count: int, base: str | None = None) -> Path:
    with open(path, "w", encoding="utf-8") as target:
        for index in range(count):
            item: dict[str, Any] = {"id": index}
            if base is not None:
                item["url"] = f"{base}/items/{index}"
            target.write(json.dumps(item) + "\n")
    return path


def rate(figures: dict[str, Any]) -> float:
    return figures["items"] / figures["seconds"] if "seconds" in figures else 0.0


def http_figures(scratch: Path, count: int) -> dict[str, dict[str, Any]]:
    with EchoService(delay=0.05) as service:
        items = write_jsonl(scratch / "http.jsonl", count, service.base)
        figures = {
            "gather": probe(scratch, "gather", str(items), "1000"),
            "fanout async": probe(
                scratch,
                "fanout",
                str(items),
                "http-async",
                FANOUT_PROCESSOR="flows.http_enrich:enrich",
                FANOUT_MAX_PARALLEL="1000",
            ),
            "fanout threads": probe(
                scratch,
                "fanout",
                str(items),
                "http-sync",
                FANOUT_PROCESSOR="flows.http_enrich:enrich_sync",
                FANOUT_MAX_PARALLEL="512",
            ),
        }
        # gather once more after the fanout runs: the machine's load drifts over minutes, and the
        # ratio is taken against each baseline run, before and after
        figures["gather again"] = probe(scratch, "gather", str(items), "1000")
        return figures


def large_figures(scratch: Path, count: int) -> dict[str, Any]:
    """The full run, the run killed at half, and its resume, against one Prefect server.

    One server for the three runs, as a deployment's runs have: the killed run's
    instance lease (src/fanout/engine/instance_lease.py) lives in that server, and the resume
    releases it at once (its holder's process is gone). With a server per run, as
    an embedded one is, the lease the new server never saw kept the slot taken.
    """
    from fanout.core.settings import get_settings
    from fanout.localstack.processes import running_prefect_server
    from fanout.storage.checkpoints import CheckpointStore, result_storage

    items = write_jsonl(scratch / "large.jsonl", count)
    limits = {"FANOUT_PROCESSOR": TRIVIAL, "FANOUT_MAX_ITEMS": str(count)}
    with running_prefect_server(scratch / "server") as server:
        api = {"PREFECT_API_URL": server.api_url}
        full = probe(scratch, "fanout", str(items), "large", **limits, **api)
        killed = probe(
            scratch, "fanout", str(items), "large-crash", **limits, **api, FANOUT_BENCH_CRASH_AFTER=str(count // 2)
        )
        settings = get_settings(result_storage=scratch / "results")
        checkpointed = len(CheckpointStore(result_storage(settings), "large-crash", TRIVIAL).finished())
        resumed = probe(scratch, "fanout", str(items), "large-crash", **limits, **api)
    return {"full": full, "killed": killed, "checkpointed": checkpointed, "resumed": resumed, "count": count}


def paging_figures(scratch: Path, count: int) -> dict[str, Any]:
    """Page 50 (limit 100 and 1,000) of a finished run, read as the results API does, against the
    design before the index (every journal scanned for the page's keys), side by side."""
    from fanout.storage.instance_results import InstanceResults

    items = write_jsonl(scratch / "paged.jsonl", count)
    run = probe(scratch, "fanout", str(items), "paged", FANOUT_PROCESSOR=TRIVIAL, FANOUT_MAX_ITEMS=str(count))
    reads: dict[str, Any] = {"run": run}
    for limit in (100, 1000):
        indexed, scanned = [], []
        for _ in range(5):
            started = time.perf_counter()
            results = InstanceResults(str(scratch / "results"), "paged")
            page = results.page(49 * limit, limit)
            indexed.append(time.perf_counter() - started)
            assert all(row.status == "completed" for row in page.items), "page not complete"
            started = time.perf_counter()
            found = scan_journals(results.index.journals if results.index else "", [row.key for row in page.items])
            scanned.append(time.perf_counter() - started)
            assert len(found) == limit, "scan missed records"
        reads[f"limit {limit}"] = statistics.median(indexed)
        reads[f"scan {limit}"] = statistics.median(scanned)
    return reads


def scan_journals(folder: str, keys: list[str]) -> dict[str, Any]:
    """The page's records found as before the index: every journal read and scanned record by record."""
    from fanout.storage import checkpoint_format

    wanted = {checkpoint_format.encoded_key(key): key for key in keys}
    found: dict[str, Any] = {}
    for name in sorted(os.listdir(folder)):
        data = Path(folder, name).read_bytes()
        for start, length, encoded in checkpoint_format.sound_records(data, len(data)):
            key = wanted.get(encoded)
            if key is not None and key not in found:
                found[key] = checkpoint_format.decode(data[start : start + length])[1]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description="workload figures")
    parser.add_argument("--quick", action="store_true", help="100,000 items in (b), 20,000 in (c)")
    parser.add_argument("--only", choices=["http", "large", "paging"], action="append")
    parser.add_argument("--http-items", type=int, default=10_000, help="items in (a); 10,000 by default")
    arguments = parser.parse_args()
    parts = arguments.only or ["http", "large", "paging"]
    with tempfile.TemporaryDirectory(prefix="fanout-workloads-") as folder:
        scratch = Path(folder)
        if "http" in parts:
            http = http_figures(scratch, arguments.http_items)
            print(f"\n(a) {arguments.http_items:,} items, one 50 ms GET each, against a local HTTP service")
            for name, figures in http.items():
                print(
                    f"  {name:16} {rate(figures):9,.0f} items/s  {figures.get('seconds', 0):6.2f} s  "
                    f"CPU {figures.get('cpu_seconds', 0):6.2f} s  "
                    f"peak RSS {figures.get('peak_rss_mib', 0):6.0f} MiB  failed {figures.get('failed', 0)}  "
                    f"{figures.get('error', '')[-300:]}"
                )
            for baseline in ("gather", "gather again"):
                ratio = rate(http["fanout async"]) / rate(http[baseline]) if rate(http[baseline]) else 0.0
                print(f"  fanout async / {baseline}: {ratio:.2f} (goal >= 0.50)")
        if "large" in parts:
            large = large_figures(scratch, 100_000 if arguments.quick else 1_000_000)
            full, resumed = large["full"], large["resumed"]
            print(f"\n(b) {large['count']:,} items from a JSONL source, trivial processor")
            print(
                f"  full run  {full.get('seconds', 0):7.2f} s  {rate(full):9,.0f} items/s  "
                f"peak RSS {full.get('peak_rss_mib', 0):6.0f} MiB (goal <= 1536)  {full.get('error', '')[-800:]}"
            )
            unfinished = large["count"] - large["checkpointed"]
            print(f"  killed at 50%: {large['checkpointed']:,} checkpointed, {unfinished:,} without a checkpoint")
            print(
                f"  resume    {resumed.get('seconds', 0):7.2f} s  executed {resumed.get('executed', '?')} items "
                f"(goal: {unfinished:,}, the ones without a checkpoint)  {resumed.get('error', '')[-800:]}"
            )
        if "paging" in parts:
            paging = paging_figures(scratch, 20_000 if arguments.quick else 100_000)
            print("\n(c) page 50 of the results of a run (median of 5 reads; goal <= 100 ms)")
            print(f"  run of {paging['run'].get('items', '?')} items {paging['run'].get('seconds', 0):.2f} s")
            for limit in (100, 1000):
                print(
                    f"  limit {limit:5}: {paging[f'limit {limit}'] * 1000:7.1f} ms (index)  "
                    f"{paging[f'scan {limit}'] * 1000:7.1f} ms (every journal scanned, as before)"
                )


if __name__ == "__main__":
    main()

"""Foundation figures, side by side in one run against one warm local Prefect server.

(a) ThreadPoolExecutor.map, (b) a naive Prefect map with persisted results,
(c) fanout, each in its own process, plus (c) rerun of the same instance with
every item checkpointed. Run: `python -m benchmarks.foundation [--count 1000]`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from deployments.processes import running_prefect_server

REPO_ROOT = Path(__file__).resolve().parent.parent


def probe(variant: str, count: int, env: dict[str, str], instance_id: str) -> dict[str, Any]:
    """Run one variant in a fresh process and return its figures."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.probe", variant, str(count), instance_id],
        capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=1800,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{variant} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fanout-bench-") as scratch:
        with running_prefect_server(Path(scratch) / "prefect") as server:
            env = {**server.client_env(), "FANOUT_RESULT_STORAGE": str(Path(scratch) / "results"),
                   "PYTHONPATH": str(REPO_ROOT), "PREFECT_LOGGING_LEVEL": "WARNING"}
            instance = f"bench-{uuid.uuid4().hex[:8]}"
            probe("fanout", 5, env, f"warmup-{instance}")
            rows = [
                ("(a) ThreadPoolExecutor.map", probe("threadpool", args.count, env, instance)),
                ("(b) naive Prefect map", probe("naive", args.count, env, instance)),
                ("(c) fanout", probe("fanout", args.count, env, instance)),
                ("(c) fanout, cached rerun", probe("fanout", args.count, env, instance)),
            ]
    report(rows, args.count)


def report(rows: list[tuple[str, dict[str, Any]]], count: int) -> None:
    table = Table(title=f"N={count}, trivial processor")
    for column in ("variant", "wall s", "items/s", "peak threads", "peak RSS MB"):
        table.add_column(column, justify="right")
    for name, row in rows:
        table.add_row(name, f"{row['seconds']:.2f}", f"{count / row['seconds']:.0f}",
                      str(row["peak_threads"]), f"{row['peak_rss_mb']:.0f}")
    console = Console()
    console.print(table)
    figures = dict(rows)
    naive, ours, cached = figures["(b) naive Prefect map"], figures["(c) fanout"], figures["(c) fanout, cached rerun"]
    console.print(f"fanout vs naive speed: {naive['seconds'] / ours['seconds']:.1f}x")
    console.print(f"cached rerun / first run: {cached['seconds'] / ours['seconds']:.2f}")


if __name__ == "__main__":
    main()

"""How long a run takes to start and finish, side by side in one run, against a cold import of Prefect.

    .venv/bin/python -m benchmarks.startup [--runs 10] [--imports 5]

Prints, measured on this machine in this one run:

- the median wall time of a cold `python -c "import prefect, fanout.seed"` (the unit of the ratios);
- the seed's 5 items from `POST /api/start-fanout` to the status URL's 200 (polled every 0.1 s) through
  `fanout up`'s stack with the warm worker (`fanout-warm`), p50 and p95 over `--runs` runs;
- the same with the status GET held until the run ends (`?wait=`), as a client that long-polls sees it;
- the same runs started with `prefect deployment run` (the CLI process's own start included), timed to
  the flow run's Completed state, polled every 0.1 s;
- the same POST -> 200 with Prefect's plain `process` worker on the same deployment (the anchor);
- a warm `fanout run` of 5 items as a whole process (against the background server it reuses);

and each figure's ratio to the cold import. Goals (issue 12): POST -> Completed p50 <= 1.0 s, p95 <= 2.0 s
and p50 <= 1.0x the cold import; warm `fanout run` <= 1.5x the cold import.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from fanout.localstack.polling import wait_for
from fanout.localstack.stack import WARM_WORKER, LocalStack, _bin, temporary_stack

POLL_SECONDS = 0.1
HELD_SECONDS = 30
RUN_TIMEOUT = 300.0
"""Longest a measured run may take before the benchmark gives up on it (seconds)."""
SEED = [f"Processed item-{i}" for i in range(1, 6)]
RUN_ID = re.compile(r"UUID:\s*([0-9a-f-]{36})")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def stop_stacks_on_sigterm() -> None:
    """SIGTERM (`timeout`, a supervisor) ends the benchmark as Ctrl-C does: its stacks are stopped on the way out."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def timed_process(argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> float:
    """Wall time of one whole process; raises if it fails."""
    began = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"{argv} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return elapsed


def cold_import() -> float:
    return timed_process([sys.executable, "-c", "import prefect, fanout.seed"])


def post_to_200(client: httpx.Client) -> float:
    """POST the seed, poll its status URL every 0.1 s until 200; seconds from POST to that 200."""
    began = time.perf_counter()
    status_url = client.post("/api/start-fanout").json()["statusQueryGetUri"]
    response = wait_for(lambda: ok(client.get(status_url)), RUN_TIMEOUT, "the run's 200", interval=POLL_SECONDS)
    assert response is not None
    assert response.json()["output"] == SEED, response.text
    return time.perf_counter() - began


def post_to_held_200(client: httpx.Client) -> float:
    """POST the seed, then GET its status URL with `?wait=`, held until the run ends; seconds to that 200."""
    began = time.perf_counter()
    status_url = client.post("/api/start-fanout").json()["statusQueryGetUri"]
    response = client.get(status_url, params={"wait": HELD_SECONDS})
    while response.status_code != 200:
        response = client.get(response.headers["location"])
    assert response.json()["output"] == SEED, response.text
    return time.perf_counter() - began


def ok(response: httpx.Response) -> httpx.Response | None:
    """The response when it is a 200, else None (keep polling)."""
    return response if response.status_code == 200 else None


def deployment_run_to_completed(stack: LocalStack) -> float:
    """`prefect deployment run` of the seed, then poll the flow run every 0.1 s until Completed."""
    began = time.perf_counter()
    done = subprocess.run(
        [_bin("prefect"), "deployment", "run", "fan-out-fan-in/default", "--param", 'request={"count": 5}'],
        env=stack.client_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    match = RUN_ID.search(done.stdout)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"prefect deployment run failed:\n{done.stdout}\n{done.stderr}")
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:

        def completed() -> bool:
            state = str(api.get(f"/flow_runs/{match.group(1)}").json()["state"]["type"])
            if state in ("FAILED", "CRASHED", "CANCELLED"):
                raise RuntimeError(f"run {match.group(1)} ended {state}")
            return state == "COMPLETED"

        wait_for(completed, RUN_TIMEOUT, f"run {match.group(1)} to complete", interval=POLL_SECONDS)
    return time.perf_counter() - began


def series(measure: Callable[[], float], runs: int, gap: float = 0.0) -> list[float]:
    """`runs` timings of `measure` after one warm-up (the first run after a worker starts pays one-off
    costs), each `gap` seconds after the one before, so it does not start in the last one's wake."""
    measure()
    timings = []
    for _ in range(runs):
        time.sleep(gap)
        timings.append(measure())
    return timings


def row(name: str, values: list[float], unit: float) -> str:
    p50, p95 = statistics.median(values), percentile(values, 0.95)
    return f"{name:<44} {len(values):>3} {p50:>7.2f} {p95:>7.2f} {p50 / unit:>8.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per starter (after one warm-up)")
    parser.add_argument("--imports", type=int, default=5, help="cold imports timed")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds of idle before each timed webhook run")
    parser.add_argument("--warm-only", action="store_true", help="leave out the process worker and `fanout run`")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    rows: list[tuple[str, list[float]]] = []
    with (
        temporary_stack("fanout-startup-") as stack,
        httpx.Client(base_url=stack.webhook_url, headers=stack.webhook_headers, timeout=60) as client,
    ):
        workers = [(WARM_WORKER, "warm worker")] + ([] if args.warm_only else [("process", "process worker (anchor)")])
        for worker_type, label in workers:
            worker = stack.start_worker(worker_type=worker_type)
            rows.append((f"POST -> 200, {label}", series(lambda: post_to_200(client), args.runs, args.gap)))
            if worker_type == WARM_WORKER:
                rows.append(
                    (
                        f"POST -> 200 held (?wait=), {label}",
                        series(lambda: post_to_held_200(client), args.runs, args.gap),
                    )
                )
                rows.append(
                    (
                        f"prefect deployment run -> Completed, {label}",
                        series(lambda: deployment_run_to_completed(stack), args.runs),
                    )
                )
            stack.stop_worker(worker)
    if not args.warm_only:
        with tempfile.TemporaryDirectory(prefix="fanout-run-") as folder:
            rows.append(("warm `fanout run` (whole process)", warm_fanout_runs(Path(folder), args.runs)))
    imports = [cold_import() for _ in range(args.imports)]
    unit = statistics.median(imports)
    print(f"{'':<44} {'n':>3} {'p50 s':>7} {'p95 s':>7} {'p50/import':>9}")
    print(row('cold `python -c "import prefect, fanout.seed"`', imports, unit))
    for name, values in rows:
        print(row(name, values, unit))
    print(f"load average at the end: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    for name, values in rows:
        print(f"{name}: {' '.join(f'{value:.2f}' for value in sorted(values))}")


def warm_fanout_runs(folder: Path, runs: int) -> list[float]:
    """`fanout run` as a whole process, `runs` times after a first run that starts the background server."""
    fanout = _bin("fanout")
    env = {name: value for name, value in os.environ.items() if name != "PREFECT_API_URL"}
    try:
        return series(lambda: timed_process([fanout, "run"], env=env, cwd=folder), runs)
    finally:
        subprocess.run([fanout, "server", "stop"], env=env, cwd=folder, capture_output=True, timeout=120)


if __name__ == "__main__":
    main()

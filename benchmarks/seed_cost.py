"""What one seed run costs the Prefect server: its CPU time and the records it writes, side by side with a baseline.

    .venv/bin/python -m benchmarks.seed_cost [--runs 10] [--rounds 2] [--items 5] [--gap 0] [--baseline DIR] [--requests]

`--rounds` times, for each variant (this checkout; with `--baseline`, the checkout in DIR, e.g.
`git worktree add DIR main`), it starts `fanout up`'s stack (server, deployments, automations, webhook)
and a warm worker from that variant's code, in a process of its own whose `PYTHONPATH` puts the
variant's `src` first, so that what the stack configures is compared too. It makes one warm-up run,
and times `--runs` seed runs one after the other (POST /api/start-fanout -> the status URL's 200,
polled every 0.1 s), `--gap` seconds apart: 0 for runs back to back, a few seconds for runs that each
arrive at an idle worker (whose spare process is ready). Around those runs it reads the server process group's CPU time
(`/proc/PID/stat`, utime + stime) and, once the server is quiet again, subtracts what it spends
idle over the same time (measured just before). Per variant it prints:

- server CPU seconds per run (median of the rounds), also less what the client's status polls cost it
  (one GET of a finished run's status, timed after the runs, times the GETs made), and likewise the warm worker's (with its flow-run
  processes) and the webhook's: their sum bounds the seed runs per second the machine's cores sustain;
- POST -> 200 p50 and p95, and the p50 as a multiple of a cold `python -c "import prefect, fanout.seed"`;
- what each run left on the server, read back from its API: events about the flow run or its task
  runs, flow-run states, task-run states, log lines, artifacts;
- where a run's wall time goes, medians over the runs: POST -> the flow run created, -> Pending (the worker
  took it), -> Running (its process proposed it), -> Completed (as the engine timestamped it), -> the client's 200;
- with `--requests`, the server's access log (`PREFECT_SERVER_LOGGING_LEVEL=INFO`) summed by route:
  requests per run to each route, from the runs' processes and from the webhook that starts them.

Goal: server CPU <= 0.4 s per seed run; POST -> 200 p50 <= 0.3x the cold import.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import httpx

from benchmarks.proc import TICKS, process_stats
from benchmarks.startup import POLL_SECONDS, cold_import, percentile, stop_stacks_on_sigterm
from fanout.localstack.stack import LocalStack, temporary_stack
from fanout.service.runs import instance_tag

QUIET_SECONDS = 2.0
"""The server counts as quiet again when it spent no more than its idle rate over this long."""
IDLE_SECONDS = 4.0
SETTLE_TIMEOUT = 60.0
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ACCESS = re.compile(r'"(GET|POST|PATCH|PUT|DELETE) (\S+) HTTP/[0-9.]+" (\d+)')
THIS = "this checkout"
BASELINE = "baseline"
REPOSITORY = Path(__file__).resolve().parent.parent


def group_cpu_seconds(pgid: int) -> float:
    """User and system CPU seconds of every process in the process group `pgid`, with those of its
    children that ended (a worker's flow-run processes)."""
    ticks = sum(sum(int(value) for value in fields[11:15]) for fields in process_stats() if int(fields[2]) == pgid)
    return ticks / TICKS


def idle_rate(pgid: int, seconds: float = IDLE_SECONDS) -> float:
    """CPU seconds per second the server spends with nothing to do but the worker's polls."""
    began, cpu = time.monotonic(), group_cpu_seconds(pgid)
    time.sleep(seconds)
    return (group_cpu_seconds(pgid) - cpu) / (time.monotonic() - began)


def wait_quiet(pgid: int, idle: float) -> None:
    """Until the server spends no more than its idle rate (plus a little) for `QUIET_SECONDS`: it has
    written the last run's events."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        cpu = group_cpu_seconds(pgid)
        time.sleep(QUIET_SECONDS)
        if group_cpu_seconds(pgid) - cpu <= (idle + 0.02) * QUIET_SECONDS:
            return


def flow_run_ids(api: httpx.Client) -> set[str]:
    return {run["id"] for run in api.post("/flow_runs/filter", json={"limit": 200}).json()}


def written(api: httpx.Client, flow_run_id: str) -> dict[str, int]:
    """What the server holds about one flow run: events, states, logs and artifacts."""
    task_runs = api.post("/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}).json()
    events = api.post(
        "/events/filter",
        json={"filter": {"any_resource": {"id": [f"prefect.flow-run.{flow_run_id}"]}}, "limit": 50},
    )
    events.raise_for_status()
    task_states = sum(
        len(api.get("/task_run_states/", params={"task_run_id": task_run["id"]}).json()) for task_run in task_runs
    )
    logs = api.post("/logs/filter", json={"logs": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200}).json()
    artifacts = api.post("/artifacts/filter", json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}).json()
    return {
        "events": int(events.json()["total"]),
        "flow-run states": len(api.get("/flow_run_states/", params={"flow_run_id": flow_run_id}).json()),
        "task runs": len(task_runs),
        "task-run states": task_states,
        "log lines": len(logs),
        "artifacts": len(artifacts),
    }


@dataclass
class Figures:
    """One variant's measurements over its rounds."""

    cpu_per_run: list[float] = field(default_factory=list)
    cpu_per_run_without_polls: list[float] = field(default_factory=list)
    """Less the server's work for the client's status GETs (polled every 0.1 s: more for a slower run)."""
    polls_per_run: list[float] = field(default_factory=list)
    worker_cpu_per_run: list[float] = field(default_factory=list)
    """The warm worker and its flow-run processes."""
    webhook_cpu_per_run: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    records: list[dict[str, int]] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    """Per run, seconds from the POST to each step (`PHASES`)."""
    requests: Counter[str] = field(default_factory=Counter)
    runs: int = 0


def server_log(stack: LocalStack) -> Path:
    assert stack.server is not None and stack.server.child is not None
    return stack.server.child.log_path


def requests_since(log: Path, offset: int) -> Counter[str]:
    """The server's access-log lines after `offset`, counted by method and route (ids as `{id}`)."""
    counted: Counter[str] = Counter()
    with log.open("rb") as lines:
        lines.seek(offset)
        for line in lines.read().decode(errors="replace").splitlines():
            match = ACCESS.search(line)
            if match:
                counted[f"{match.group(1)} {UUID.sub('{id}', match.group(2).split('?')[0])}"] += 1
    return counted


@dataclass
class Started:
    """One timed run: seconds from POST to the status URL's 200, and the status GETs that took."""

    seconds: float
    polls: int
    status_url: str
    posted: float = 0.0
    """When the POST was sent (epoch seconds, the clock Prefect's timestamps use)."""


PHASES = ("created", "PENDING", "RUNNING", "COMPLETED", "200")


def timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def phases(api: httpx.Client, run: Started) -> dict[str, float] | None:
    """Seconds from the run's POST to its flow run's creation, its Pending, Running and Completed states
    (as their proposers timestamped them) and the client's 200; None when its flow run is not found."""
    instance_id = run.status_url.rstrip("/").rsplit("/", 1)[-1]
    body = {"flow_runs": {"tags": {"all_": [instance_tag(instance_id)]}}, "limit": 1}
    found = api.post("/flow_runs/filter", json=body).json()
    if not found:
        return None
    states = api.get("/flow_run_states/", params={"flow_run_id": found[0]["id"]}).json()
    steps = {"created": timestamp(found[0]["created"]) - run.posted}
    steps.update({state["type"]: timestamp(state["timestamp"]) - run.posted for state in states})
    steps["200"] = run.seconds
    return {name: steps[name] for name in PHASES if name in steps}


def post_to_200(client: httpx.Client, items: int) -> Started:
    """POST a seed start of `items` items, poll its status URL every 0.1 s until 200."""
    posted, began = time.time(), time.perf_counter()
    status_url = client.post("/api/start-fanout", json={"count": items}).json()["statusQueryGetUri"]
    polls = 0
    while True:
        response = client.get(status_url)
        polls += 1
        if response.status_code == 200:
            assert response.json()["output"] == [f"Processed item-{i}" for i in range(1, items + 1)], response.text
            return Started(time.perf_counter() - began, polls, status_url, posted)
        time.sleep(POLL_SECONDS)


def post_after(gap: float, client: httpx.Client, items: int) -> Started:
    """`post_to_200` after a pause of `gap` seconds."""
    time.sleep(gap)
    return post_to_200(client, items)


def poll_cost(client: httpx.Client, status_url: str, pgid: int, idle: float, count: int = 50) -> float:
    """Server CPU seconds of one status GET (of a finished run), to take the client's polling out of a run's cost."""
    wait_quiet(pgid, idle)
    began, cpu = time.monotonic(), group_cpu_seconds(pgid)
    for _ in range(count):
        client.get(status_url).raise_for_status()
    return (group_cpu_seconds(pgid) - cpu - idle * (time.monotonic() - began)) / count


def measure_round(
    stack: LocalStack, env: dict[str, str], runs: int, items: int, figures: Figures, gap: float = 0.0
) -> None:
    """One worker start: a warm-up run, then `runs` timed runs with the server's CPU read around them."""
    assert stack.server is not None and stack.server.child is not None and stack.webhook is not None
    pgid = stack.server.child.process.pid
    worker = stack.start_worker(env=env)
    try:
        with (
            httpx.Client(base_url=stack.webhook_url, headers=stack.webhook_headers, timeout=60) as client,
            httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=60) as api,
        ):
            post_to_200(client, items)
            wait_quiet(pgid, 0.05)
            idle = idle_rate(pgid)
            before_ids = flow_run_ids(api)
            offset = server_log(stack).stat().st_size
            others = {"worker": worker.process.pid, "webhook": stack.webhook.process.pid}
            others_idle = {name: idle_rate(group, 1.0) for name, group in others.items()}
            others_cpu = {name: group_cpu_seconds(group) for name, group in others.items()}
            began, cpu = time.monotonic(), group_cpu_seconds(pgid)
            started = [post_after(gap, client, items) for _ in range(runs)]
            wait_quiet(pgid, idle)
            elapsed = time.monotonic() - began
            server_cpu = group_cpu_seconds(pgid) - cpu - idle * elapsed
            spent = {
                name: group_cpu_seconds(group) - others_cpu[name] - others_idle[name] * elapsed
                for name, group in others.items()
            }
            figures.worker_cpu_per_run.append(spent["worker"] / runs)
            figures.webhook_cpu_per_run.append(spent["webhook"] / runs)
            figures.requests += requests_since(server_log(stack), offset)
            polls = sum(run.polls for run in started)
            figures.seconds += [run.seconds for run in started]
            figures.cpu_per_run.append(server_cpu / runs)
            figures.polls_per_run.append(polls / runs)
            per_poll = poll_cost(client, started[-1].status_url, pgid, idle)
            figures.cpu_per_run_without_polls.append((server_cpu - polls * per_poll) / runs)
            figures.runs += runs
            figures.records += [written(api, run_id) for run_id in flow_run_ids(api) - before_ids]
            figures.phases += [steps for run in started if (steps := phases(api, run)) is not None]
    finally:
        stack.stop_worker(worker)


def report(results: dict[str, Figures], unit: float, show_requests: bool) -> None:
    print(f'cold `python -c "import prefect, fanout.seed"`: {unit:.2f} s (median)')
    print(f"{'':<34} " + " ".join(f"{name:>16}" for name in results))

    def line(name: str, values: list[str]) -> None:
        print(f"{name:<34} " + " ".join(f"{value:>16}" for value in values))

    line("server CPU s per run (median)", [f"{statistics.median(f.cpu_per_run):.3f}" for f in results.values()])
    line("server CPU s per run (rounds)", [" ".join(f"{v:.2f}" for v in f.cpu_per_run) for f in results.values()])
    line("  less the status polls", [f"{statistics.median(f.cpu_per_run_without_polls):.3f}" for f in results.values()])
    line("  status polls per run", [f"{statistics.median(f.polls_per_run):.1f}" for f in results.values()])
    line("worker + flow CPU s per run", [f"{statistics.median(f.worker_cpu_per_run):.3f}" for f in results.values()])
    line("webhook CPU s per run", [f"{statistics.median(f.webhook_cpu_per_run):.3f}" for f in results.values()])
    line("POST -> 200 p50 s", [f"{statistics.median(f.seconds):.3f}" for f in results.values()])
    line("POST -> 200 p95 s", [f"{percentile(f.seconds, 0.95):.3f}" for f in results.values()])
    line("POST -> 200 p50 / cold import", [f"{statistics.median(f.seconds) / unit:.2f}x" for f in results.values()])
    for step in PHASES:
        line(
            f"POST -> {step} p50 s",
            [
                f"{statistics.median(p[step] for p in f.phases if step in p):.3f}" if f.phases else "-"
                for f in results.values()
            ],
        )
    kinds = next(iter(results.values())).records[0].keys() if next(iter(results.values())).records else []
    for kind in kinds:
        line(
            f"{kind} per run (median)", [f"{statistics.median(r[kind] for r in f.records):g}" for f in results.values()]
        )
    if show_requests:
        routes = sorted({route for f in results.values() for route in f.requests})
        print("\nrequests per run, by route:")
        for route in routes:
            line(route[:34], [f"{f.requests[route] / f.runs:.1f}" for f in results.values()])
        line("all requests", [f"{sum(f.requests.values()) / f.runs:.1f}" for f in results.values()])
    print(f"load average at the end: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")


def one_round(runs: int, items: int, gap: float = 0.0) -> Figures:
    """One round in this process: a stack from the `fanout` this interpreter imports, measured."""
    figures = Figures()
    with temporary_stack("fanout-seed-cost-") as stack:
        measure_round(stack, {}, runs, items, figures, gap)
    return figures


def round_of(checkout: Path, runs: int, items: int, gap: float = 0.0) -> Figures:
    """One round of the variant in `checkout`: a process of its own whose `PYTHONPATH` puts that checkout's
    `src` first (and this one's `benchmarks`), so its stack runs the variant's code throughout."""
    python_path = os.pathsep.join([str(checkout.resolve() / "src"), str(REPOSITORY)])
    argv = [sys.executable, "-m", "benchmarks.seed_cost", "--one-round", "--runs", str(runs), "--items", str(items)]
    argv += ["--gap", str(gap)]
    done = subprocess.run(
        argv, env={**os.environ, "PYTHONPATH": python_path}, cwd=REPOSITORY, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"a round of {checkout} failed:\n{done.stderr[-4000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return Figures(**{**measured, "requests": Counter(measured["requests"])})


def merged(into: Figures, round_figures: Figures) -> None:
    """Add one round's figures to a variant's."""
    for name in ("cpu_per_run", "cpu_per_run_without_polls", "polls_per_run", "worker_cpu_per_run"):
        getattr(into, name).extend(getattr(round_figures, name))
    for name in ("webhook_cpu_per_run", "seconds", "records", "phases"):
        getattr(into, name).extend(getattr(round_figures, name))
    into.requests += round_figures.requests
    into.runs += round_figures.runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10, help="timed seed runs per round (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2, help="stack starts per variant, interleaved")
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with (its src/ runs the whole stack)")
    parser.add_argument("--items", type=int, default=5, help="items per run (the seed's request has 5)")
    parser.add_argument("--imports", type=int, default=5, help="cold imports timed (the unit of the ratio)")
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between one run's 200 and the next POST")
    parser.add_argument("--requests", action="store_true", help="count the server's requests per run by route")
    parser.add_argument("--one-round", action="store_true", help=argparse.SUPPRESS)  # a round, as JSON
    args = parser.parse_args()
    stop_stacks_on_sigterm()
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    if args.requests:
        os.environ["PREFECT_SERVER_LOGGING_LEVEL"] = "INFO"  # uvicorn's access log
    if args.one_round:
        figures = one_round(args.runs, args.items, args.gap)
        print(json.dumps({**asdict(figures), "requests": dict(figures.requests)}))
        return
    variants: dict[str, Path] = {THIS: REPOSITORY}
    if args.baseline:
        variants[BASELINE] = args.baseline
    results = {name: Figures() for name in variants}
    for _ in range(args.rounds):
        for name, checkout in variants.items():
            measured = round_of(checkout, args.runs, args.items, args.gap)
            merged(results[name], measured)
            print(
                f"{name}: server CPU s per run less the polls {measured.cpu_per_run_without_polls[0]:.3f}", flush=True
            )
    unit = statistics.median(cold_import() for _ in range(args.imports))
    report(results, unit, args.requests)


if __name__ == "__main__":
    main()

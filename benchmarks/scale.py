"""Scale figures (issues 5 and 13), side by side in one run against one warm local Prefect server.

(a) `ThreadPoolExecutor.map` floor, (b) a naive Prefect `task.map` with persisted results,
(c) fanout; N = 1,000 and 10,000 for all three, 100,000 for (a) and (c); and (d) a Prefect flow
that only returns the N results, which is what any flow returning them costs (its creation,
states and the persisted N-item result). Each run is its own process (benchmarks/probe.py);
runs are in-process like `fanout run`, so without heartbeats (`fanout.seed.run_here`).

(c) at 10,000 is measured in trials (three by default; the table shows the median): a full
run of a new instance, its rerun with every item cached, and a run killed (SIGKILL of its
process group, from inside once it has executed half its items), then resumed. Ratios are taken within each
trial. One more trial uses 5 ms items, where item work outweighs the fixed cost of a run.

(e) is a user's own flow (a plain `@flow`) calling `fanout.durable_map` on the same 10,000
trivial items and returning the results, and (e') the same flow returning their count (Prefect
walks a list a flow returns, three times, which the seed's flow avoids by returning a state): both
run side by side with the seed's flow (c) in each trial, in rotating order; each cost is the median
of the per-trial ratios to (c), in wall time and in the flow process's CPU time.

`--in-flow` measures only (c) against (a) at 10,000 trivial items, (c1) the seed's flow on one item (what a
run costs before any item), and (c2, c3) the same two in a process prepared as the warm worker prepares its
spare flow-run process (the production path), side by side in rotating order
(nine trials by default, each variant a process of its own started the same way), and prints each trial's ratio of items/s
and the median, with the load average before and after: how much of a plain thread
pool's speed a run keeps with fanout's bookkeeping and Prefect's flow around it. With `--baseline
DIR` it adds (c0), the seed's flow from another checkout of the code, (c0') the same in a spare-prepared
process, and (c1', c3') their runs of one item, so a change is measured against the code before it in the
same run (per trial, the baseline's wall time over this checkout's).

Run: `python -m benchmarks.scale` (about 10 minutes on 2 cores; `--quick` skips 100,000 and
the naive 10,000 and makes one trial; `--durable-only` measures (c) against (e) alone). It
prints one table and the issue's goals as measured. `--durable-only --baseline DIR` adds (c0), the
seed's flow from a checkout of the code before durable_map (`git worktree add DIR <commit>`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient
from rich.console import Console
from rich.table import Table

from fanout.engine.failures import read_failed_items
from fanout.localstack.processes import Child, PrefectServer, running_prefect_server, spawn
from fanout.service.status import REPORTED_STATE_TYPES, custom_status, reported_failures, requested_total
from fanout.storage.checkpoints import item_digest

REPO_ROOT = Path(__file__).resolve().parent.parent
RECORDING_PROCESSOR = "benchmarks.processors:recorded"
WAITING_PROCESSOR = "benchmarks.processors:waiting"
STATUS_GRACE_SECONDS = 60.0


@dataclass
class Bench:
    """Where runs go: the server, the scratch folder, the environment every probe gets."""

    server: PrefectServer
    scratch: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def results(self) -> Path:
        return self.scratch / "results"

    def start(self, variant: str, count: int, instance: str, run_name: str, **env: str) -> Child:
        argv = [sys.executable, "-m", "benchmarks.probe", variant, str(count), instance, run_name]
        return spawn(run_name, argv, {**self.env, **env}, self.scratch / "logs", cwd=REPO_ROOT)

    def run(self, variant: str, count: int, instance: str | None = None, **env: str) -> dict[str, Any]:
        """Run one variant to the end and return its figures, with the status lag when it has one."""
        run_name = f"{variant}-{count}-{uuid.uuid4().hex[:6]}"
        watcher = StatusWatcher(self.server.api_url, run_name, variant, count)
        child = self.start(variant, count, instance or run_name, run_name, **env)
        if variant in ("naive", "fanout"):
            watcher.start()
        child.process.wait()
        figures = last_json(child)
        watcher.stop_after(STATUS_GRACE_SECONDS if variant == "naive" else 10.0)
        figures["status_seconds"] = watcher.lag(figures["started_at"])
        figures["status_seen"] = watcher.seen
        return figures


def last_json(child: Child) -> dict[str, Any]:
    if child.process.returncode != 0:
        raise RuntimeError(f"{child.name} exited {child.process.returncode}:\n{child.log_tail()}")
    figures = [line for line in child.log_tail(20).splitlines() if line.startswith("{")]
    found: dict[str, Any] = json.loads(figures[-1])
    return found


class StatusWatcher:
    """Polls the API for the flow run named `run_name` until its status shows every item done.

    For fanout that is what the status URL's `customStatus` shows: the run's progress
    labels, and once it has an item report, the counts of that report
    (`fanout.service.status`); for the naive map, which has no progress of its own, the
    count of its COMPLETED task runs.
    """

    def __init__(self, api_url: str, run_name: str, variant: str, count: int) -> None:
        self.api_url, self.run_name, self.variant, self.count = api_url, run_name, variant, count
        self.done_at: float | None = None
        self.seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop_after(self, grace: float) -> None:
        """Keep watching up to `grace` seconds more (the API may lag the run), then stop."""
        self._thread.join(timeout=grace) if self._thread.is_alive() else None
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def lag(self, started_at: float) -> float | None:
        return None if self.done_at is None else self.done_at - started_at

    def _loop(self) -> None:
        with httpx.Client(base_url=self.api_url, timeout=10.0) as client:
            while not self._stop.wait(0.2):
                try:
                    self.seen = self._done_items(client)
                except httpx.HTTPError:
                    continue
                if self.seen >= self.count:
                    self.done_at = time.time()
                    return

    def _done_items(self, client: httpx.Client) -> int:
        by_name = {"flow_runs": {"name": {"any_": [self.run_name]}}}
        if self.variant == "naive":
            body = {**by_name, "task_runs": {"state": {"type": {"any_": ["COMPLETED"]}}}}
            return int(client.post("/task_runs/count", json=body).json())
        runs = client.post("/flow_runs/filter", json={**by_name, "limit": 1}).json()
        if not runs:
            return 0
        state_type = (runs[0].get("state") or {}).get("type")
        failures = self._failed_items(runs[0]["id"]) if state_type in REPORTED_STATE_TYPES else None
        status = custom_status(
            runs[0].get("labels"),
            requested_total(runs[0].get("parameters") or {}),
            reported_failures(state_type, failures),
        )
        return status.completed + status.failed

    def _failed_items(self, flow_run_id: str) -> list[dict[str, Any]] | None:
        """The finished run's failed items, read as the status URL reads them."""

        async def read() -> list[dict[str, Any]] | None:
            async with PrefectClient(self.api_url) as client:
                return await read_failed_items(client, UUID(flow_run_id))

        return asyncio.run(read())


def crash_and_resume(bench: Bench, count: int, processor: str = RECORDING_PROCESSOR) -> dict[str, Any]:
    """Kill a fanout run (SIGKILL of its process group) once it has executed half its items;
    resume it; count the items that had a checkpoint before the kill and ran again."""
    instance = f"crash-{uuid.uuid4().hex[:6]}"
    env = {"FANOUT_PROCESSOR": processor}
    child = bench.start("fanout", count, instance, f"crash-{instance}", FANOUT_BENCH_CRASH_AFTER=str(count // 2), **env)
    if child.process.wait() != -signal.SIGKILL:
        raise RuntimeError(f"{child.name} was to be killed half-way but exited {child.process.returncode}")
    finished = complete_records(bench.results, instance, count, processor)
    executed_file = bench.scratch / f"{instance}-resume.txt"
    resumed = bench.run("fanout", count, instance, FANOUT_BENCH_EXECUTED=str(executed_file), **env)
    executed = [line for line in executed_file.read_text().splitlines() if line]
    again = [item for item in executed if item_digest(item) in finished]
    return {**resumed, "finished_before": len(finished), "executed": len(executed), "reexecuted": len(again)}


def trial(bench: Bench, count: int, processor: str) -> dict[str, dict[str, Any]]:
    """One full run of a new instance, its fully cached rerun, and a run killed at 50% then resumed."""
    instance = f"full-{count}-{uuid.uuid4().hex[:6]}"
    full = bench.run("fanout", count, instance, FANOUT_PROCESSOR=processor)
    cached = bench.run("fanout", count, instance, FANOUT_PROCESSOR=processor)
    return {"full": full, "cached": cached, "resume": crash_and_resume(bench, count, processor)}


def median_trial(trials: list[dict[str, dict[str, Any]]]) -> dict[str, Any]:
    """Per measure, the trial with the median time, and the median of each trial's ratio to its full run."""

    def median_of(values: list[float]) -> float:
        return statistics.median(values)

    chosen: dict[str, Any] = {}
    for measure in ("full", "cached", "resume"):
        ordered = sorted(trials, key=lambda one: one[measure]["seconds"])
        chosen[measure] = ordered[len(ordered) // 2][measure]
        chosen[f"{measure}_samples"] = [one[measure]["seconds"] for one in trials]
    chosen["cached_ratio"] = median_of([one["cached"]["seconds"] / one["full"]["seconds"] for one in trials])
    chosen["resume_ratio"] = median_of([one["resume"]["seconds"] / one["full"]["seconds"] for one in trials])
    chosen["reexecuted"] = max(one["resume"]["reexecuted"] for one in trials)
    return chosen


def durable_against_seed(
    bench: Bench, trials: int, count: int = 10_000, baseline: Path | None = None
) -> dict[str, Any]:
    """The seed's flow (c), a user's flow on durable_map returning the results (e) and one returning
    their count (e'), and with `baseline` (a checkout of the code before durable_map) the seed's flow
    as it was (c0), side by side on new instances, in rotating order; per variant its median run and
    the median of the per-trial ratios to (c) and to (c0), in wall and CPU time."""
    variants: tuple[str, ...] = ("fanout", "durable", "durable_count") + (("baseline",) if baseline else ())
    runs: list[dict[str, dict[str, Any]]] = []
    for number in range(trials):
        shift = number % len(variants)
        trial: dict[str, dict[str, Any]] = {}
        for variant in variants[shift:] + variants[:shift]:
            instance = f"{variant}-{uuid.uuid4().hex[:6]}"
            if variant == "baseline":
                assert baseline is not None
                trial[variant] = bench.run("fanout", count, instance, PYTHONPATH=str(baseline / "src"))
            else:
                trial[variant] = bench.run(variant, count, instance)
        runs.append(trial)
    compared: dict[str, Any] = {}
    for variant in variants:
        ordered = sorted((trial[variant] for trial in runs), key=lambda row: row["seconds"])
        compared[variant] = {"median": ordered[len(ordered) // 2]}
        for reference in ("fanout", "baseline"):
            if reference in variants:
                compared[variant][f"to_{reference}"] = {
                    "wall": [trial[variant]["seconds"] / trial[reference]["seconds"] for trial in runs],
                    "cpu": [trial[variant]["cpu_seconds"] / trial[reference]["cpu_seconds"] for trial in runs],
                }
    return compared


def complete_records(results: Path, instance: str, count: int, processor: str) -> set[str]:
    """Digests of the items whose checkpoint is a whole record (a write cut by the kill is not)."""
    from prefect.filesystems import LocalFileSystem

    from fanout.storage.checkpoints import CheckpointStore

    store = CheckpointStore(LocalFileSystem(basepath=str(results)), instance, processor)
    return {item_digest(item) for item in store.load(f"item-{i}" for i in range(1, count + 1))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="skip N=100,000 and the naive N=10,000; one trial")
    parser.add_argument(
        "--trials", type=int, help="trials of fanout at N=10,000, medians shown (default 3; --quick: 1)"
    )
    parser.add_argument(
        "--durable-only", action="store_true", help="only (c) against (e): the seed's flow and a user's durable_map"
    )
    parser.add_argument(
        "--in-flow", action="store_true", help="only (c) against (a), ThreadPoolExecutor.map, at 10,000 trivial items"
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="with --durable-only or --in-flow: another checkout of the code (git worktree add DIR <commit>), run as (c0)",
    )
    args = parser.parse_args()
    if args.in_flow:
        in_flow(args.trials or 9, args.baseline)
        return
    if args.durable_only:
        durable_only(args.trials or 5, args.baseline)
        return
    sizes = {
        "threadpool": [1000, 10_000, 100_000],
        "floor": [1000, 10_000],
        "naive": [1000, 10_000],
        "fanout": [1000, 100_000],
    }
    trials = args.trials or 3
    if args.quick:
        sizes = {"threadpool": [1000, 10_000], "floor": [10_000], "naive": [1000], "fanout": [1000]}
        trials = args.trials or 1
    console = Console(width=180)
    with warm_bench() as bench:
        samples = []
        for number in range(1, trials + 1):
            console.log(f"fanout N=10,000, trial {number} of {trials}: full run, cached rerun, kill at 50% and resume")
            samples.append(trial(bench, 10_000, RECORDING_PROCESSOR))
        trivial = median_trial(samples)
        console.log(f"durable_map in a user's flow against the seed's flow, N=10,000, {trials} trials")
        compared = durable_against_seed(bench, max(trials, 3))
        console.log("fanout N=10,000 with 5 ms items: full run, cached rerun, kill at 50% and resume")
        waiting = median_trial([trial(bench, 10_000, WAITING_PROCESSOR)])
        rows: dict[tuple[str, int], dict[str, Any]] = {("fanout", 10_000): trivial["full"]}
        # fanout first, the naive map last: the server works off the naive map's event
        # backlog for minutes after it returns, which would slow whatever ran next.
        for variant in ("fanout", "threadpool", "floor", "naive"):
            for count in sizes[variant]:
                console.log(f"{variant} N={count:,}")
                rows[(variant, count)] = bench.run(variant, count, f"full-{count}-{uuid.uuid4().hex[:6]}")
    report(console, rows, trivial, waiting)
    report_durable(console, compared)


@contextmanager
def warm_bench() -> Iterator[Bench]:
    """A bench on a Prefect server of its own, in a scratch folder, warmed with one small seed run."""
    with tempfile.TemporaryDirectory(prefix="fanout-scale-") as scratch_dir:
        scratch = Path(scratch_dir)
        with running_prefect_server(scratch / "prefect") as server:
            env = {
                **server.client_env(),
                "FANOUT_RESULT_STORAGE": str(scratch / "results"),
                "PYTHONPATH": str(REPO_ROOT),
                "PREFECT_LOGGING_LEVEL": "WARNING",
            }
            bench = Bench(server=server, scratch=scratch, env=env)
            bench.run("fanout", 5)  # warm the server
            yield bench


def durable_only(trials: int, baseline: Path | None = None) -> None:
    """Just the seed's flow against a user's flow on durable_map, at 10,000 trivial items."""
    console = Console(width=180)
    with warm_bench() as bench:
        bench.run("durable", 5)
        bench.run("durable_count", 5)
        console.log(f"durable_map in a user's flow against the seed's flow, N=10,000, {trials} trials")
        compared = durable_against_seed(bench, trials, baseline=baseline)
    report_durable(console, compared)


def in_flow(trials: int, baseline: Path | None = None, count: int = 10_000) -> None:
    """(a) ThreadPoolExecutor.map against (c) the seed's flow, and with `baseline` (c0) the seed's flow from
    that checkout, at `count` trivial items, each trial in a rotated order; per trial the ratio of items/s."""
    console = Console(width=180)
    variants: tuple[str, ...] = ("threadpool", "fanout", "fixed", "spare", "spare_fixed") + (
        ("baseline", "baseline_spare", "baseline_fixed", "baseline_spare_fixed") if baseline else ()
    )
    runs: list[dict[str, dict[str, Any]]] = []
    with warm_bench() as bench:
        load_before = os.getloadavg()[0]
        for number in range(trials):
            shift = number % len(variants)
            order = variants[shift:] + variants[:shift]
            console.log(f"trial {number + 1} of {trials}: {', '.join(order)}, N={count:,}")
            runs.append({variant: _in_flow_run(bench, variant, count, baseline) for variant in order})
    report_in_flow(console, runs, count, load_before)


def _in_flow_run(bench: Bench, variant: str, count: int, baseline: Path | None) -> dict[str, Any]:
    instance = f"{variant}-{uuid.uuid4().hex[:6]}"
    if variant.startswith("baseline"):
        assert baseline is not None
        probe = "spare" if "spare" in variant else "fanout"
        size = 1 if variant.endswith("fixed") else count
        return bench.run(probe, size, instance, PYTHONPATH=str(baseline / "src"))
    if variant == "fixed":
        return bench.run("fanout", 1, instance)
    if variant == "spare_fixed":
        return bench.run("spare", 1, instance)
    return bench.run(variant, count, instance)


def report_in_flow(console: Console, runs: list[dict[str, dict[str, Any]]], count: int, load_before: float) -> None:
    names = {
        "threadpool": "(a) ThreadPoolExecutor.map",
        "fanout": "(c) fanout, the seed's flow",
        "baseline": "(c0) the seed's flow from the baseline checkout",
        "fixed": "(c1) the seed's flow on 1 item: a run's fixed cost",
        "spare": "(c2) (c) in a process prepared as the warm worker's spare",
        "spare_fixed": "(c3) (c1) in a process prepared as the warm worker's spare",
        "baseline_spare": "(c0') (c2) from the baseline checkout",
        "baseline_fixed": "(c1') (c1) from the baseline checkout",
        "baseline_spare_fixed": "(c3') (c3) from the baseline checkout",
    }
    table = Table(title=f"{count:,} trivial items: fanout against ThreadPoolExecutor.map, {len(runs)} trials")
    columns = ("variant", "wall s (median)", "items/s (median)", "CPU s (median)", "items/s / (a)'s, per trial")
    for column in (*columns, "CPU (a) / CPU, median"):
        table.add_column(column, justify="right")
    for variant, name in names.items():
        if variant not in runs[0]:
            continue
        seconds = statistics.median(trial[variant]["seconds"] for trial in runs)
        cpu = statistics.median(trial[variant]["cpu_seconds"] for trial in runs)
        ratios = [trial["threadpool"]["seconds"] / trial[variant]["seconds"] for trial in runs]
        cpu_ratio = statistics.median(
            trial["threadpool"]["cpu_seconds"] / trial[variant]["cpu_seconds"] for trial in runs
        )
        shown = "" if variant == "threadpool" else f"{statistics.median(ratios):.2f} [{_ratios(ratios)}]"
        cpu_shown = "" if variant == "threadpool" else f"{cpu_ratio:.2f}"
        rate = "(1 item)" if variant.endswith("fixed") else f"{count / seconds:,.0f}"
        table.add_row(name, f"{seconds:.3f}", rate, f"{cpu:.3f}", shown, cpu_shown)
    console.print(table)
    fanout = statistics.median(trial["threadpool"]["seconds"] / trial["fanout"]["seconds"] for trial in runs)
    fixed = statistics.median(trial["threadpool"]["seconds"] / trial["fixed"]["seconds"] for trial in runs)
    spare = statistics.median(trial["threadpool"]["seconds"] / trial["spare"]["seconds"] for trial in runs)
    console.print(
        f"(c) keeps {fanout:.0%} of (a)'s items/s, median of per-trial ratios (goal >= 50%); a run of 1 item "
        f"already takes 1/{fixed:.2f} of (a)'s time for {count:,} (the most (c) could keep with no cost per item); "
        f"load average {load_before:.1f} before the trials, {os.getloadavg()[0]:.1f} after; in a process prepared "
        f"as the warm worker's spare, (c2) keeps {spare:.0%}"
    )
    if "baseline" in runs[0]:
        before = statistics.median(trial["threadpool"]["seconds"] / trial["baseline"]["seconds"] for trial in runs)
        spare_before = statistics.median(
            trial["threadpool"]["seconds"] / trial["baseline_spare"]["seconds"] for trial in runs
        )
        console.print(f"the baseline checkout keeps {before:.0%} (c0), and {spare_before:.0%} as the spare (c0')")
        for mine, theirs in (("fanout", "baseline"), ("spare", "baseline_spare"), ("fixed", "baseline_fixed")):
            faster = [trial[theirs]["seconds"] / trial[mine]["seconds"] for trial in runs]
            console.print(
                f"baseline wall / this checkout's, {mine}: {statistics.median(faster):.2f} [{_ratios(faster)}]"
            )
        faster = [trial["baseline_spare_fixed"]["seconds"] / trial["spare_fixed"]["seconds"] for trial in runs]
        console.print(
            f"baseline wall / this checkout's, spare_fixed: {statistics.median(faster):.2f} [{_ratios(faster)}]"
        )


def report_durable(console: Console, compared: dict[str, Any]) -> None:
    names = {
        "baseline": "(c0) the seed's flow before durable_map",
        "fanout": "(c) the seed's flow on durable_map",
        "durable": "(e) a user's flow returning durable_map's results",
        "durable_count": "(e') the same user's flow returning their count",
    }
    console.print("N=10,000 trivial items; ratios are medians of per-trial ratios (goal for (e) <= 1.05)")
    for variant, name in names.items():
        if variant not in compared:
            continue
        figures = compared[variant]
        run = figures["median"]
        line = f"  {name}: {run['seconds']:.2f} s wall, {run['cpu_seconds']:.2f} s CPU (median run)"
        for reference, label in (("fanout", "(c)"), ("baseline", "(c0)")):
            ratios = figures.get(f"to_{reference}")
            if ratios and reference != variant:
                line += (
                    f"; to {label}: wall {statistics.median(ratios['wall']):.3f} [{_ratios(ratios['wall'])}], "
                    f"CPU {statistics.median(ratios['cpu']):.3f} [{_ratios(ratios['cpu'])}]"
                )
        console.print(line)


def _ratios(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def report(
    console: Console, rows: dict[tuple[str, int], dict[str, Any]], trivial: dict[str, Any], waiting: dict[str, Any]
) -> None:
    names = {
        "threadpool": "(a) ThreadPoolExecutor.map",
        "naive": "(b) naive Prefect map",
        "fanout": "(c) fanout",
        "floor": "(d) Prefect floor: a flow that only returns the N results",
    }
    table = Table(title="Scale, trivial processor unless noted, warm local Prefect server")
    for column in (
        "variant",
        "N",
        "wall s",
        "items/s",
        "(c)/(b)",
        "peak RSS MB",
        "peak threads",
        "status done after s",
    ):
        table.add_column(column, justify="right")
    for (variant, count), row in sorted(
        rows.items(), key=lambda entry: (entry[0][1], entry[0][0] != "threadpool", entry[0][0])
    ):
        naive = rows.get(("naive", count))
        ratio = f"{naive['seconds'] / row['seconds']:.1f}x" if variant == "fanout" and naive else ""
        table.add_row(
            names[variant],
            f"{count:,}",
            f"{row['seconds']:.2f}",
            f"{count / row['seconds']:,.0f}",
            ratio,
            f"{row['peak_rss_mb']:.0f}",
            str(row["peak_threads"]),
            _status(row, count),
        )
    for label, figures in (("", trivial), (", 5 ms items", waiting)):
        if label:
            _add_row(table, f"(c) fanout{label}", figures["full"])
        _add_row(table, f"(c) cached rerun{label}", figures["cached"])
        _add_row(table, f"(c) resume after kill at 50%{label}", figures["resume"])
    console.print(table)
    full = trivial["full"]
    naive = rows.get(("naive", 10_000))
    console.print(
        f"N=10,000 fanout: {10_000 / full['seconds']:,.0f} items/s, whole flow call (goal >= 10,000)"
        + (f", {naive['seconds'] / full['seconds']:.1f}x naive (goal >= 25x)" if naive else "")
        + f"; median of full runs {_samples(trivial['full_samples'])}"
    )
    crash = trivial["resume"]
    console.print(
        f"resume after kill at 50%: {trivial['resume_ratio']:.2f} of a full run (goal <= 0.55; median of "
        f"{len(trivial['resume_samples'])}); in the median trial {crash['finished_before']:,} items were "
        f"checkpointed before the kill and the resume executed {crash['executed']:,}; finished items "
        f"executed again, in the worst trial: {trivial['reexecuted']} (goal 0)"
    )
    console.print(
        f"fully cached rerun: {trivial['cached_ratio']:.2f} of a full run (goal <= 0.1; median of "
        f"{len(trivial['cached_samples'])})"
    )
    console.print(
        f"with 5 ms items, where item work outweighs the fixed cost of a run: resume "
        f"{waiting['resume_ratio']:.2f}, cached rerun {waiting['cached_ratio']:.2f} of a full run of "
        f"{waiting['full']['seconds']:.2f} s; {waiting['reexecuted']} finished items executed again"
    )
    big = rows.get(("fanout", 100_000))
    if big:
        console.print(
            f"N=100,000 fanout: completed in {big['seconds']:.1f} s, peak RSS {big['peak_rss_mb']:.0f} MB "
            f"(goal <= 200), peak threads {big['peak_threads']} (goal <= 64)"
        )


def _add_row(table: Table, name: str, row: dict[str, Any]) -> None:
    table.add_row(
        name,
        f"{row['count']:,}",
        f"{row['seconds']:.2f}",
        "",
        "",
        f"{row['peak_rss_mb']:.0f}",
        str(row["peak_threads"]),
        _status(row, row["count"]),
    )


def _samples(seconds: list[float]) -> str:
    return "(" + ", ".join(f"{value:.2f}" for value in seconds) + " s)"


def _status(row: dict[str, Any], count: int) -> str:
    if row.get("variant") in ("threadpool", "floor"):
        return "n/a"
    if row.get("status_seconds") is None:
        return f"not within {STATUS_GRACE_SECONDS:.0f}s ({row.get('status_seen', 0):,} of {count:,})"
    return f"{row['status_seconds']:.2f}"


if __name__ == "__main__":
    main()

"""Kill -9 figures: how soon after a crash a fanout run resumes and completes, what ran twice, what a client saw.

    .venv/bin/python -m benchmarks.faults [--count 100] [--repeats 3] [--kinds flow,host,backstop] [--anchor]

Starts a real Prefect server with the fanout deployment, its crash-resume automations
and the webhook, then for each crash kind, `--repeats` times: starts `--count` slow
items through the webhook, polls the status URL every 0.2 s as a client would, and
at half way SIGKILLs

    flow      the run's flow-run process only; its worker lives on and reports the crash
    host      the worker running it and its flow-run process, while a second warm worker stands by
              (another host) and resumes the run when its alive events stop
    backstop  the same, with the second worker's standby turned off (`FANOUT_STANDBY=false`): only
              fanout's automations resume the run, as for Prefect's `process` workers

then waits until the run ends by itself. Prints each repeat (with the status sequence
the client saw) and, per kind, the medians of kill -> resumed work, kill -> Completed
and the items run twice, kill -> the client's first `resuming` answer, and whether any client
saw a 200 before the end. Also, measured in the same runs: kill -> rescheduled (AwaitingRetry: what the warm worker or fanout's
automations take) and what the worker takes to start a flow process (the first attempt's
Submitting -> Running), which a resume pays again.

The workers are fanout's warm worker (`fanout-warm`, what `fanout up` runs); `--anchor`
also measures Prefect's plain `process` worker on the same deployment, interleaved in the
same run and printed beside it (slow: each of its resumes starts a new interpreter, and a
crash under a living `process` worker waits for the automations' retry window).
`--worker-type` measures one other worker type alone.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from fanout.core.settings import FanoutSettings, get_settings
from fanout.localstack.stack import WARM_WORKER, WORKER_POLL_SECONDS
from tests.support.fault_scenarios import CrashResult, Workspace, crash_at_half
from tests.support.fault_stack import fault_stack

KINDS = ("flow", "host", "backstop")
DEFAULT_KINDS = ("flow", "host")
ANCHOR = "process"
LABELS = {
    "flow": "flow process only (worker alive)",
    "host": "host: worker + flow process (a standby)",
    "backstop": "host, standby off (automations only)",
}
SCENARIOS = {"flow": ("flow", {}), "host": ("host", {}), "backstop": ("host", {"FANOUT_STANDBY": "false"})}
"""Each kind: the crash `crash_at_half` makes, and the workers' extra settings."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.4, help="seconds each item sleeps")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--kinds", default=",".join(DEFAULT_KINDS), help=f"crash kinds to run: {', '.join(KINDS)}")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument(
        "--worker-type",
        default=WARM_WORKER,
        choices=sorted(WORKER_POLL_SECONDS),
        help=f"the workers' type (default {WARM_WORKER}, fanout's warm worker)",
    )
    parser.add_argument(
        "--anchor",
        action="store_true",
        help=f"also measure Prefect's `{ANCHOR}` worker in the same run, side by side (several minutes more)",
    )
    parser.add_argument(
        "--silent-after", type=int, default=None, help="FANOUT_SILENT_AFTER_SECONDS (default: the setting's)"
    )
    parser.add_argument(
        "--retry-window", type=int, default=None, help="FANOUT_RETRY_WINDOW_SECONDS (default: the setting's)"
    )
    parser.add_argument(
        "--standby-silent",
        type=float,
        default=None,
        help="FANOUT_STANDBY_SILENT_SECONDS (default: the setting's)",
    )
    args = parser.parse_args()
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown crash kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    worker_types = [args.worker_type] + ([ANCHOR] if args.anchor and args.worker_type != ANCHOR else [])
    crash_env = {"FANOUT_MAX_AUTO_RETRIES": str(args.retries)}
    if args.silent_after is not None:
        crash_env["FANOUT_SILENT_AFTER_SECONDS"] = str(args.silent_after)
    if args.retry_window is not None:
        crash_env["FANOUT_RETRY_WINDOW_SECONDS"] = str(args.retry_window)
    if args.standby_silent is not None:
        crash_env["FANOUT_STANDBY_SILENT_SECONDS"] = str(args.standby_silent)
    settings = get_settings(**{name[len("FANOUT_") :].lower(): value for name, value in crash_env.items()})
    results: dict[tuple[str, str], list[CrashResult]] = {(w, k): [] for w in worker_types for k in kinds}
    with tempfile.TemporaryDirectory(prefix="fanout-faults-") as temp:
        began = time.monotonic()
        with fault_stack(Path(temp) / "stack", crash_env) as stack:
            print(f"stack ready in {time.monotonic() - began:.0f}s (server {stack.api_url})", flush=True)
            for repeat in range(1, args.repeats + 1):
                # interleaved, so every worker type and kind sees the same machine load
                for worker_type, kind in results:
                    workspace = Workspace(Path(temp) / f"{worker_type}-{kind}-{repeat}", storage=stack.results)
                    crash, worker_env = SCENARIOS[kind]
                    try:
                        result = crash_at_half(
                            stack,
                            workspace,
                            crash,
                            count=args.count,
                            sleep=args.sleep,
                            parallel=args.parallel,
                            worker_type=worker_type,
                            worker_env=worker_env,
                        )
                    finally:
                        stack.stop_workers()
                        stack.cancel_unfinished()
                    print_repeat(worker_type, kind, repeat, result)
                    results[worker_type, kind].append(result)
    print_summary(results, worker_types, args, settings)


def print_repeat(worker_type: str, kind: str, repeat: int, result: CrashResult) -> None:
    in_flight_only = not set(result.reexecuted) & result.finished_before_kill
    print(
        f"{worker_type} {kind} #{repeat}: {result.state} run_count={result.run_count} "
        f"finished_before_kill={len(result.finished_before_kill)}/{result.count} "
        f"kill->rescheduled={result.kill_to_rescheduled or float('nan'):.1f}s "
        f"kill->resuming seen={result.kill_to_resuming or float('nan'):.1f}s "
        f"kill->resume={result.kill_to_resume:.1f}s kill->complete={result.kill_to_complete:.1f}s "
        f"re-executed={len(result.reexecuted)} (only in-flight: {in_flight_only}) "
        f"output_ok={result.output == [f'Processed item-{i}' for i in range(1, result.count + 1)]} "
        f"max customStatus.failed={result.max_failed}",
        flush=True,
    )
    print(f"    status seen: {' -> '.join(result.statuses)}", flush=True)
    print("    states (time from the kill):\n      " + "\n      ".join(result.history), flush=True)


def figures(runs: list[CrashResult]) -> list[tuple[str, list[float]]]:
    """The per-run figures of one worker type and crash kind, in print order."""
    return [
        ("kill -> client sees resuming (s)", [r.kill_to_resuming or float("nan") for r in runs]),
        ("kill -> rescheduled (s)", [r.kill_to_rescheduled or float("nan") for r in runs]),
        ("kill -> resumed work (s)", [r.kill_to_resume for r in runs]),
        ("worker: Submitting -> Running (s)", [r.start_cost or float("nan") for r in runs]),
        ("kill -> run Completed (s)", [r.kill_to_complete for r in runs]),
        ("items run twice", [float(len(r.reexecuted)) for r in runs]),
    ]


def cell(values: list[float]) -> str:
    """`median (min-max)` of the runs that have the figure (nan: a run without it, e.g. no AwaitingRetry)."""
    known = [value for value in values if value == value]
    if not known:
        return "-"
    missing = f" [{len(values) - len(known)} without]" if len(known) < len(values) else ""
    return f"{statistics.median(known):.1f} ({min(known):.1f}-{max(known):.1f}){missing}"


def print_summary(
    results: dict[tuple[str, str], list[CrashResult]],
    worker_types: list[str],
    args: argparse.Namespace,
    settings: FanoutSettings,
) -> None:
    print(f"\nmedian (min-max) of {args.repeats} runs per cell")
    print(f"{'crash kind':42} {'figure':34} " + " ".join(f"{w:>22}" for w in worker_types))
    kinds = list(dict.fromkeys(kind for _, kind in results))
    for kind in kinds:
        columns = [figures(results[worker_type, kind]) for worker_type in worker_types]
        for row, (name, _) in enumerate(columns[0]):
            cells = " ".join(f"{cell(column[row][1]):>22}" for column in columns)
            print(f"{LABELS[kind]:42} {name:34} {cells}")
        early = [
            f"{sum(r.first_final != '200 Completed' for r in results[w, kind])} of {len(results[w, kind])}"
            for w in worker_types
        ]
        print(f"{LABELS[kind]:42} {'a 200 before the end':34} " + " ".join(f"{e:>22}" for e in early))
        if len(worker_types) > 1:
            resumed = [statistics.median(r.kill_to_resume for r in results[w, kind]) for w in worker_types]
            print(
                f"{LABELS[kind]:42} {'resumed work: ' + worker_types[1] + ' / ' + worker_types[0]:34} "
                f"{resumed[1] / resumed[0]:>22.1f}x"
            )
    if {"host", "backstop"} <= set(kinds):
        for w in worker_types:
            standby, backstop = (
                statistics.median(r.kill_to_resume for r in results[w, k]) for k in ("host", "backstop")
            )
            print(f"{'host death, ' + w:42} {'resumed work: standby / automations':34} {standby / backstop:>22.2f}x")
    shown = {w: max(r.max_failed for k in kinds for r in results[w, k]) for w in worker_types}
    totals = sorted({str(r.first_total) for runs in results.values() for r in runs})
    polls = ", ".join(f"{w} every {WORKER_POLL_SECONDS[w]}s" for w in worker_types)
    print(
        f"\nfirst customStatus.total seen {totals}; max customStatus.failed seen {shown}\n"
        f"settings: {args.count} items x {args.sleep}s, {args.parallel} in flight; alive event every "
        f"{settings.liveness_seconds:g}s; a standby resumes after {settings.standby_silent_seconds:g}s of "
        f"silence and a probe of its event stream, the automations after {settings.silent_after_seconds}s; "
        f"a Crashed run retried after {settings.retry_window_seconds}s; max automatic retries "
        f"{settings.max_auto_retries}; workers poll ({polls}), the warm one also wakes on Scheduled/AwaitingRetry "
        "events; Prefect evaluates proactive triggers every 5s"
    )


if __name__ == "__main__":
    main()

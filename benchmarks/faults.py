"""Kill -9 figures: how soon after a crash a fanout run resumes and completes, what ran twice, what a client saw.

    .venv/bin/python -m benchmarks.faults [--count 100] [--repeats 3] [--kinds flow,host]

Starts a real Prefect server with the fanout deployment, its crash-resume automations
and the webhook, then for each crash kind, `--repeats` times: starts `--count` slow
items through the webhook, polls the status URL every 0.2 s as a client would, and
at half way SIGKILLs

    flow   the flow-run process only; its worker lives on and reports the crash
    host   the worker running it and its flow-run process, while a second worker stands by (another host)

then waits until the run ends by itself. Prints each repeat (with the status sequence
the client saw) and, per kind, the medians of kill -> resumed work, kill -> Completed
and the items run twice, and whether any client saw a 200 before the end. Also, measured in
the same runs: kill -> rescheduled (AwaitingRetry, what fanout's automations take) and
what the `process` worker takes to start a flow process (the first attempt's
Submitting -> Running), which a resume pays again.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from devstack.fault_scenarios import CrashResult, Workspace, crash_at_half
from devstack.fault_stack import fault_stack
from flows.settings import FanoutSettings, get_settings

KINDS = ("flow", "host")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.4, help="seconds each item sleeps")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--kinds", default=",".join(KINDS), help="crash kinds to run: flow, host")
    parser.add_argument("--retries", type=int, default=3)
    parser.add_argument(
        "--worker-type",
        default="process",
        help="the workers' type: Prefect's `process` (the automations resume runs) or the stack's warm one",
    )
    parser.add_argument(
        "--silent-after", type=int, default=None, help="FANOUT_SILENT_AFTER_SECONDS (default: the setting's)"
    )
    parser.add_argument(
        "--retry-window", type=int, default=None, help="FANOUT_RETRY_WINDOW_SECONDS (default: the setting's)"
    )
    args = parser.parse_args()
    kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown crash kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")
    crash_env = {"FANOUT_MAX_AUTO_RETRIES": str(args.retries)}
    if args.silent_after is not None:
        crash_env["FANOUT_SILENT_AFTER_SECONDS"] = str(args.silent_after)
    if args.retry_window is not None:
        crash_env["FANOUT_RETRY_WINDOW_SECONDS"] = str(args.retry_window)
    settings = get_settings(**{name[len("FANOUT_") :].lower(): value for name, value in crash_env.items()})
    results: dict[str, list[CrashResult]] = {kind: [] for kind in kinds}
    with tempfile.TemporaryDirectory(prefix="fanout-faults-") as temp:
        began = time.monotonic()
        with fault_stack(Path(temp) / "stack", crash_env) as stack:
            print(f"stack ready in {time.monotonic() - began:.0f}s (server {stack.api_url})", flush=True)
            for repeat in range(1, args.repeats + 1):
                for kind in kinds:  # interleaved, so both kinds see the same machine load
                    workspace = Workspace(Path(temp) / f"{kind}-{repeat}", storage=stack.results)
                    try:
                        result = crash_at_half(
                            stack,
                            workspace,
                            kind,
                            count=args.count,
                            sleep=args.sleep,
                            parallel=args.parallel,
                            worker_type=args.worker_type,
                        )
                    finally:
                        stack.stop_workers()
                        stack.cancel_unfinished()
                    print_repeat(repeat, result)
                    results[kind].append(result)
    print_summary(results, args, settings)


def print_repeat(repeat: int, result: CrashResult) -> None:
    in_flight_only = not set(result.reexecuted) & result.finished_before_kill
    print(
        f"{result.kind} #{repeat}: {result.state} run_count={result.run_count} "
        f"finished_before_kill={len(result.finished_before_kill)}/{result.count} "
        f"kill->rescheduled={result.kill_to_rescheduled or float('nan'):.1f}s "
        f"kill->resume={result.kill_to_resume:.1f}s kill->complete={result.kill_to_complete:.1f}s "
        f"re-executed={len(result.reexecuted)} (only in-flight: {in_flight_only}) "
        f"output_ok={result.output == [f'Processed item-{i}' for i in range(1, result.count + 1)]} "
        f"max customStatus.failed={result.max_failed}",
        flush=True,
    )
    print(f"    status seen: {' -> '.join(result.statuses)}", flush=True)
    print("    states (time from the kill):\n      " + "\n      ".join(result.history), flush=True)


def print_summary(results: dict[str, list[CrashResult]], args: argparse.Namespace, settings: FanoutSettings) -> None:
    print()
    print(f"{'crash kind':44} {'figure':32} {'median':>7}  values")
    for kind, runs in results.items():
        label = "flow process only (worker alive)" if kind == "flow" else "host: worker + flow process (2nd worker)"
        for name, values in [
            ("kill -> rescheduled (s)", [r.kill_to_rescheduled or float("nan") for r in runs]),
            ("kill -> resumed work (s)", [r.kill_to_resume for r in runs]),
            ("worker: Submitting -> Running (s)", [r.start_cost or float("nan") for r in runs]),
            ("kill -> run Completed (s)", [r.kill_to_complete for r in runs]),
            ("items run twice", [float(len(r.reexecuted)) for r in runs]),
        ]:
            print(f"{label:44} {name:32} {statistics.median(values):7.1f}  {', '.join(f'{v:.1f}' for v in values)}")
        early = [r.statuses for r in runs if r.first_final != "200 Completed"]
        print(
            f"{label:44} {'a 200 before the end':32} {len(early):7d}  of {len(runs)} runs; first total "
            f"{sorted({str(r.first_total) for r in runs})}; max failed shown {max(r.max_failed for r in runs)}"
        )
    print(
        f"\nsettings: {args.count} items x {args.sleep}s, {args.parallel} in flight; alive event every "
        f"{settings.liveness_seconds:g}s, resumed after {settings.silent_after_seconds}s of silence; "
        f"a Crashed run retried after {settings.retry_window_seconds}s; max automatic retries "
        f"{settings.max_auto_retries}; {args.worker_type} workers polling every 1s; Prefect evaluates proactive triggers every 5s"
    )


if __name__ == "__main__":
    main()

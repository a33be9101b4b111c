"""Kill -9 figures: how long after a host dies a fanout run resumes and completes, and what ran twice.

    .venv/bin/python -m benchmarks.faults [--count 200] [--repeats 3] [--crash-after 90]

Starts a real Prefect server with the fanout deployment and its crash-resume automations,
then, `--repeats` times: runs `--count` slow items, SIGKILLs the worker and its flow-run
processes at half way, starts a fresh worker and waits until the run ends by itself.
Prints each repeat and the medians, and the heartbeat/automation settings used.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from deployments.automations import RETRY_WINDOW
from tests.faults.scenarios import KillNineResult, Workspace, kill_nine_at_half
from flows.settings import get_settings
from tests.support.fault_stack import fault_stack


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.4, help="seconds each item sleeps")
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--heartbeat", type=int, default=30)
    parser.add_argument("--crash-after", type=int, default=90)
    parser.add_argument("--retries", type=int, default=3)
    args = parser.parse_args()
    crash_env = {"FANOUT_HEARTBEAT_SECONDS": str(args.heartbeat), "FANOUT_CRASH_AFTER_SECONDS": str(args.crash_after),
                 "FANOUT_MAX_AUTO_RETRIES": str(args.retries)}
    get_settings(heartbeat_seconds=args.heartbeat, crash_after_seconds=args.crash_after, max_auto_retries=args.retries)
    with tempfile.TemporaryDirectory(prefix="fanout-faults-") as temp:
        began = time.monotonic()
        with fault_stack(Path(temp) / "stack", crash_env) as stack:
            print(f"stack ready in {time.monotonic() - began:.0f}s (server {stack.api_url})", flush=True)
            results = []
            for repeat in range(1, args.repeats + 1):
                workspace = Workspace(Path(temp) / f"repeat-{repeat}")
                result = kill_nine_at_half(stack, workspace, count=args.count, sleep=args.sleep, parallel=args.parallel)
                stack.stop_workers()
                print_repeat(repeat, result)
                results.append(result)
    print_summary(results, args)


def print_repeat(repeat: int, result: KillNineResult) -> None:
    in_flight_only = not set(result.reexecuted) & result.finished_before_kill
    print(f"repeat {repeat}: {result.state} run_count={result.run_count} "
          f"finished_before_kill={len(result.finished_before_kill)}/{result.count} "
          f"kill->resume={result.kill_to_resume:.1f}s kill->complete={result.kill_to_complete:.1f}s "
          f"re-executed={len(result.reexecuted)} {result.reexecuted} (only in-flight: {in_flight_only}) "
          f"output_ok={result.output == [f'Processed item-{i}' for i in range(1, result.count + 1)]}", flush=True)


def print_summary(results: list[KillNineResult], args: argparse.Namespace) -> None:
    print()
    print(f"{'figure':34} {'median':>8}  values")
    for name, values in [
        ("kill -> resumed work (s)", [r.kill_to_resume for r in results]),
        ("kill -> run Completed (s)", [r.kill_to_complete for r in results]),
        ("items re-executed after the kill", [float(len(r.reexecuted)) for r in results]),
    ]:
        print(f"{name:34} {statistics.median(values):8.1f}  {', '.join(f'{v:.1f}' for v in values)}")
    print(f"\nsettings: {args.count} items x {args.sleep}s, {args.parallel} in flight; "
          f"PREFECT_FLOWS_HEARTBEAT_FREQUENCY={args.heartbeat}s; crashed after {args.crash_after}s without a heartbeat; "
          f"retry automation window {RETRY_WINDOW.total_seconds():.0f}s; "
          f"max automatic retries {args.retries}; worker polls every 1s")


if __name__ == "__main__":
    main()

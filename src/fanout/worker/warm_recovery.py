"""What the warm worker does when a flow-run process has ended: nothing, finish a cancel, or resume a crash.

A process that died mid-run leaves its run Running; while automatic retries remain the worker puts the
same flow run straight back to AwaitingRetry, never through Crashed, which Prefect's clients read as
final. With no retry left, or if Prefect refuses, the run is reported Crashed and the crash automations
take over.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.responses import OrchestrationResult, SetStateStatus
from prefect.states import AwaitingRetry, Cancelled, Crashed, Failed

RESUMED = "resumed"
CRASHED = "crashed"
GAVE_UP = "gave-up"
CANCELLED = "cancelled"
UNCHANGED = "unchanged"
"""The run was already where it belongs (final, scheduled again or paused): nothing was done."""


@dataclass(frozen=True)
class ExitOutcome:
    """What the worker did about an ended process, and the message it recorded."""

    action: str
    message: str = ""


def describe_exit(exit_code: int | None) -> str:
    """`exit code 1` or `signal SIGKILL` (multiprocessing gives a signal as a negative code)."""
    if exit_code is None:
        return "an unknown status"
    if exit_code < 0:
        try:
            return f"signal {signal.Signals(-exit_code).name}"
        except ValueError:
            return f"signal {-exit_code}"
    return f"exit code {exit_code}"


def retry_allowed(run_count: int, max_auto_retries: int) -> bool:
    """True while automatic retries remain.

    `run_count` counts the attempts that reached Running, so attempt N may be
    followed by another while N <= max_auto_retries. A run that died before it
    ever ran (run_count 0) is not retried: nothing bounds such a loop.
    """
    return 1 <= run_count <= max_auto_retries


async def recover_after_exit(
    client: PrefectClient,
    flow_run_id: UUID,
    pid: int,
    exit_code: int | None,
    max_auto_retries: int,
) -> ExitOutcome:
    """Bring the run of an ended process to where it belongs (see the module docstring).

    Exit code 0 is Prefect's engine saying it recorded the run's outcome (a final state, a pause, or an
    abort by the orchestrator), as Prefect's `process` worker reads it: the run is left as it is, unread.
    """
    if exit_code == 0:
        return ExitOutcome(UNCHANGED)
    run = await client.read_flow_run(flow_run_id)
    state = run.state
    if state is None or state.is_final() or state.is_scheduled() or state.is_paused():
        return ExitOutcome(UNCHANGED)
    if state.is_cancelling():
        message = "Flow run was cancelled; its process was stopped."
        await client.set_flow_run_state(flow_run_id, Cancelled(message=message), force=True)
        return ExitOutcome(CANCELLED, message)
    crash = f"Flow run process {pid} ended with {describe_exit(exit_code)} before the run finished."
    if retry_allowed(run.run_count, max_auto_retries):
        return await _resume(client, flow_run_id, crash, run.run_count, max_auto_retries)
    await client.set_flow_run_state(flow_run_id, Crashed(message=crash))
    message = (
        f"{crash} Automatic retries exhausted ({max_auto_retries} allowed)."
        if run.run_count
        else f"{crash} It crashed before it started running, so it is not retried automatically."
    )
    await client.set_flow_run_state(flow_run_id, Failed(message=message), force=True)
    return ExitOutcome(GAVE_UP, message)


async def _resume(
    client: PrefectClient, flow_run_id: UUID, crash: str, run_count: int, max_auto_retries: int
) -> ExitOutcome:
    """Put the run back to AwaitingRetry in one transition; report it Crashed if Prefect does not accept that."""
    message = f"{crash} Resumed automatically (attempt {run_count + 1}, at most {max_auto_retries} retries)."
    result: OrchestrationResult[Any] = await client.set_flow_run_state(flow_run_id, AwaitingRetry(message=message))
    if result.status == SetStateStatus.ACCEPT:
        return ExitOutcome(RESUMED, message)
    reason = getattr(result.details, "reason", None) or "no reason given"
    crashed = f"{crash} Prefect answered {result.status.value} to AwaitingRetry ({reason}), so it is reported Crashed."
    await client.set_flow_run_state(flow_run_id, Crashed(message=crashed))
    return ExitOutcome(CRASHED, crashed)

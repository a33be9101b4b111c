"""What the warm worker does when a flow-run process has ended: nothing, finish a cancel, or resume a crash.

A process that ends after Prefect recorded a final state needs nothing. One
that died mid-run (SIGKILL, out of memory, `os._exit`) left its run Running:
the worker, which saw it die, reports it Crashed (so the UI and the logs say
what happened) and at once puts the *same* flow run back to AwaitingRetry
while automatic retries remain (`FANOUT_MAX_AUTO_RETRIES`, counted with the
run's `run_count`), so its instance id and checkpoints carry over and only
unfinished items run again. With no retry left the run ends Failed, saying so.

The crash automations (deployments/automations.py) stay compatible: their
retry trigger is proactive and does not fire when AwaitingRetry follows Crashed
within its window, and their give-up action would set the same Failed state.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.states import AwaitingRetry, Cancelled, Crashed, Failed

RESUMED = "resumed"
GAVE_UP = "gave-up"
CANCELLED = "cancelled"
SETTLED = "settled"


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


async def settle_exit(
    client: PrefectClient,
    flow_run_id: UUID,
    pid: int,
    exit_code: int | None,
    max_auto_retries: int,
) -> ExitOutcome:
    """Bring the run of an ended process to where it belongs (see the module docstring)."""
    run = await client.read_flow_run(flow_run_id)
    state = run.state
    if state is None or state.is_final() or state.is_scheduled() or state.is_paused():
        return ExitOutcome(SETTLED)
    if state.is_cancelling():
        message = "Flow run was cancelled; its process was stopped."
        await client.set_flow_run_state(flow_run_id, Cancelled(message=message), force=True)
        return ExitOutcome(CANCELLED, message)
    crash = f"Flow run process {pid} ended with {describe_exit(exit_code)} before the run finished."
    await client.set_flow_run_state(flow_run_id, Crashed(message=crash))
    if retry_allowed(run.run_count, max_auto_retries):
        message = f"{crash} Resumed automatically (attempt {run.run_count + 1}, at most {max_auto_retries} retries)."
        await client.set_flow_run_state(flow_run_id, AwaitingRetry(message=message))
        return ExitOutcome(RESUMED, message)
    message = (
        f"{crash} Automatic retries exhausted ({max_auto_retries} allowed)."
        if run.run_count
        else f"{crash} It crashed before it started running, so it is not retried automatically."
    )
    await client.set_flow_run_state(flow_run_id, Failed(message=message), force=True)
    return ExitOutcome(GAVE_UP, message)

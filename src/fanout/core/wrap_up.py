"""A run's wrap-up: bookkeeping done after Prefect recorded the run's final state, not before.

A client polls the status URL and stops at the run's final state. Once the
items are settled and the output recorded, what the flow still has to do is
bookkeeping nobody waits for: the run report's artifacts, releasing the
instance lease, the last progress count. Each is an API write, and on SQLite
writes queue behind one another, so done before the final state they held it
back: 0.1-0.2 s of every short run, measured, and more when a write had to be
replayed.

So the flow hands them to `after_final_state`, and `wrap_up`, the flow's hook
for every final state (Prefect's `on_completion`, `on_failure`,
`on_cancellation` and `on_crashed`), runs them right after the final state is recorded: in a
deployment run before its process ends, in `fanout run` before the flow call
returns. Outside a flow run an action runs at once.

A process that dies in between skips its wrap-up, which is safe: the report is
for people, and a lease a dead run still holds is released by the instance's
next run (src/fanout/engine/instance_lease.py) or lapses.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

logger = logging.getLogger(__name__)

Action = Callable[[], object]

_pending: dict[UUID, list[Action]] = {}
_lock = threading.Lock()


def after_final_state(action: Action, stopped: BaseException | None = None) -> None:
    """Run `action` once the current flow run's final state is recorded (at once outside a flow run).

    `stopped`: the exception the caller's block ended with. Such a run may never reach a
    final state in this process (suspended: Prefect's `Pause` ends the process with the
    run Paused, and no state hook runs), so its wrap-up runs at once.
    """
    run_id = _current_flow_run_id()
    if run_id is None or stopped is not None:
        action()
        return
    with _lock:
        _pending.setdefault(run_id, []).append(action)


def wrap_up(flow: Any, flow_run: Any, state: Any) -> None:
    """The state hook: run the flow run's wrap-up actions, in order; one that fails is logged and the rest run."""
    with _lock:
        actions = _pending.pop(flow_run.id, [])
    for action in actions:
        try:
            action()
        except Exception as error:  # noqa: BLE001 - bookkeeping must not change a recorded outcome
            logger.warning("wrap-up of flow run %s: %s failed: %r", flow_run.id, _name(action), error)


def _current_flow_run_id() -> UUID | None:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run = context.flow_run if context else None
    return run.id if run is not None else None


def _name(action: Action) -> str:
    target = getattr(action, "func", action)
    return getattr(target, "__qualname__", repr(target))

"""A run's wrap-up: bookkeeping done after Prefect recorded the run's final state, not before.

The report artifacts, the lease release and the last progress count are API writes nobody waits for,
so they must not delay the final state a client polls for. `after_final_state` queues them and
`wrap_up`, the flow's final-state hook, runs them. See docs/design/batches-and-progress.md.
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

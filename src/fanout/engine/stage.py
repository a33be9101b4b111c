"""A stage: one `durable_map` call, its function and its name.

The name names the stage's task runs and its checkpoint folder, so it must be the same on every run
of the instance: `stage=`, else the function's qualified name, numbered on repeated calls. A flow
that calls `durable_map` in the same order on every run finds each stage's checkpoints again.
"""

from __future__ import annotations

import functools
import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from prefect import Task

from fanout.core.errors import InvalidRequest
from fanout.engine.processor_kind import ProcessorKind, processor_kind
from fanout.engine.retry_policy import RetryPolicy

STAGE_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")
UNSAFE = re.compile(r"[^A-Za-z0-9_.:-]")


@dataclass(frozen=True)
class StageFunction:
    """What a stage calls per item, as `durable_map` was handed it."""

    function: Callable[..., Any]
    kind: ProcessorKind
    name: str
    """Names the task runs: `<name>-<item>`."""
    qualified: str
    """`__qualname__`, safe in a path: the stage's default name."""
    retry: RetryPolicy | None
    """A Prefect task's own retry policy; None for a plain function (the settings' applies)."""


def stage_function(fn: Callable[..., Any], name: str | None = None) -> StageFunction:
    """`fn` resolved: a Prefect task's function and retry policy, or the function itself;
    `InvalidProcessor` for what cannot be called once per item."""
    retry = None
    if isinstance(fn, Task):
        retry = RetryPolicy.of_task(fn.retries, fn.retry_delay_seconds, fn.retry_jitter_factor)
        name = name or fn.name
        fn = fn.fn
    qualified = _qualified(fn)
    return StageFunction(fn, processor_kind(fn, qualified), name or _name_of(fn), qualified, retry)


def _target(fn: Any) -> Any:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return fn


def _name_of(fn: Any) -> str:
    target = _target(fn)
    return str(getattr(target, "__name__", None) or type(target).__name__)


def _qualified(fn: Any) -> str:
    """The function's `__qualname__` (its class's, for a callable object), safe in a path. Not its module:
    a flow file run as a script (`__main__`) and loaded by a deployment (a loader's module name) would
    name one function two ways, and lose its checkpoints."""
    target = _target(fn)
    if not hasattr(target, "__qualname__"):
        target = type(target)
    return UNSAFE.sub("_", str(target.__qualname__))


def check_stage(stage: str) -> str:
    """`stage` if it can name a folder of checkpoints, else `InvalidRequest` saying what can."""
    if not STAGE_PATTERN.match(stage):
        raise InvalidRequest(
            f"stage {stage!r} must be 1..200 characters of letters, digits, '_', '.', ':' and '-', "
            "starting with a letter, digit or '_'"
        )
    return stage


class StageNames:
    """The default stage names handed out in one attempt of a flow run: a function's name, numbered
    from its second call (per instance)."""

    def __init__(self) -> None:
        self._calls: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def next(self, instance_id: str, qualified: str) -> str:
        """`qualified` on its first call, then `qualified-2`, `qualified-3`, ..."""
        with self._lock:
            self._calls[(instance_id, qualified)] += 1
            ordinal = self._calls[(instance_id, qualified)]
        return qualified if ordinal == 1 else f"{qualified}-{ordinal}"


_names: dict[tuple[UUID, int], StageNames] = {}
_lock = threading.Lock()


def stage_names(flow_run_id: UUID, run_count: int) -> tuple[StageNames, bool]:
    """The names of this attempt of the flow run (a retry of the run numbers its calls afresh), and
    whether they were made just now: then whoever asked forgets them at the run's end (`forget_stage_names`)."""
    with _lock:
        names = _names.get((flow_run_id, run_count))
        if names is not None:
            return names, False
        names = _names[(flow_run_id, run_count)] = StageNames()
        return names, True


def forget_stage_names(flow_run_id: UUID, run_count: int) -> None:
    with _lock:
        _names.pop((flow_run_id, run_count), None)

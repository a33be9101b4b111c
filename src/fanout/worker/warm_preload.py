"""The forkserver's last preload: work every flow-run process would do first, done once before it forks any.

Prefect defines most of its API models with deferred validators: the first use
of a model in a process builds its schema (FlowRun to read the run the worker
hands over, FlowRunUpdate for the engine's first update, WorkPool, State,
TaskRun, ...). In a forked process that happens on every run, before the run
can propose Running. Built in the forkserver, every process it forks inherits
them, and the seed flow's own first-run work (`fanout.seed.warm_up`). `multiprocessing` preloads by importing, so importing this module is what
does the work; it is named last in the preload list
(src/fanout/worker/warm_processes.py), after every module whose models it builds.
"""

from __future__ import annotations

import logging

from pydantic import BaseModel

from fanout.seed import warm_up

logger = logging.getLogger(__name__)


def model_classes(root: type[BaseModel] = BaseModel) -> list[type[BaseModel]]:
    """Every subclass of `root` defined so far, at any depth."""
    found: dict[type[BaseModel], None] = {}
    pending = [root]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass not in found:
                found[subclass] = None
                pending.append(subclass)
    return list(found)


def complete_models(classes: list[type[BaseModel]] | None = None) -> int:
    """Build the schema of each model that has not built it yet; how many were built.

    A model that cannot be built now (a forward reference not yet defined) is
    left as it is, to be built on first use as before.
    """
    built = 0
    for model in model_classes() if classes is None else classes:
        if model.__dict__.get("__pydantic_complete__", True):
            continue
        try:
            model.model_rebuild()
        except Exception as error:  # noqa: BLE001 - only a head start: the run builds it on first use
            logger.debug("model %s left to its first use: %s", model.__qualname__, error)
            continue
        built += 1
    return built


complete_models()
warm_up()

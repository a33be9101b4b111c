"""Log lines about an item carry its correlation id, `<instance_id>/<item>`.

`item_logger()` is what a processor calls while an item runs; `correlating()`, entered by the flow,
tags the lines Prefect's task engine writes itself. The message prefix is what a person sees in the
UI; the record's `correlation_id` is what a log shipper or a test matches on.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

from prefect.context import TaskRunContext
from prefect.exceptions import MissingContextError
from prefect.logging import get_run_logger

from fanout.core.item_context import ItemContext, current_item
from fanout.core.outcome import describe

CORRELATION_FIELD = "correlation_id"
TASK_RUN_LOGGER = "prefect.task_runs"
_fallback = logging.getLogger("fanout.items")


def correlation_id(scope: str, item: str) -> str:
    """The id that ties an item's log lines, task run and report row together: `<scope>/<item>`, where
    the scope is the instance, or `<instance>/<stage>` for a stage whose ids name it."""
    return f"{scope}/{item}"


class ItemLogAdapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes each message with the item's correlation id and records it as `correlation_id`."""

    def __init__(self, logger: Any, correlation: str) -> None:
        super().__init__(logger, {CORRELATION_FIELD: correlation})
        self.correlation = correlation

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(kwargs.get("extra") or {}), CORRELATION_FIELD: self.correlation}
        return f"[{self.correlation}] {msg}", kwargs


def item_logger(context: ItemContext | None = None) -> ItemLogAdapter:
    """A logger for the item being processed; call it inside a processor.

    Lines go to Prefect's run logger (shown in the UI with the task run) when
    there is a run, else to the standard `fanout.items` logger.
    """
    context = context or current_item()
    return ItemLogAdapter(_run_logger(), context.correlation_id)


def _run_logger() -> Any:
    try:
        return get_run_logger()
    except MissingContextError:
        return _fallback


def _task_correlation() -> str | None:
    """The correlation id of the running fanout task, from its parameters (`run`, and `item` or `label`)."""
    context = TaskRunContext.get()
    if context is None:
        return None
    parameters = context.parameters or {}
    scope = getattr(parameters.get("run"), "scope", None)
    subject = parameters.get("item", parameters.get("label"))
    if not isinstance(scope, str) or not isinstance(subject, str):
        return None
    return correlation_id(scope, subject)


class CorrelationFilter(logging.Filter):
    """Adds the item's correlation id to Prefect's own task-run lines of one fanout flow run."""

    def __init__(self, flow_run_id: str | None = None, instance_id: str | None = None) -> None:
        super().__init__()
        self.flow_run_id = flow_run_id
        self.instance_id = instance_id

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, CORRELATION_FIELD, None) is None:
            correlation = _task_correlation() or self._record_correlation(record)
            if correlation is not None:
                record.msg = f"[{correlation}] {record.msg}"
                setattr(record, CORRELATION_FIELD, correlation)
        return True

    def _record_correlation(self, record: logging.LogRecord) -> str | None:
        """The id of a task-run line of this flow run written outside the task's context (its final state)."""
        if self.instance_id is None or str(getattr(record, "flow_run_id", None)) != self.flow_run_id:
            return None
        name, task_name = getattr(record, "task_run_name", None), getattr(record, "task_name", None)
        if not isinstance(name, str) or not isinstance(task_name, str) or not name.startswith(f"{task_name}-"):
            return None
        return correlation_id(self.instance_id, name[len(task_name) + 1 :])


@contextmanager
def correlating(flow_run_id: str, instance_id: str) -> Iterator[None]:
    """While a fanout flow run fans out, tag its task runs' lines with `<instance_id>/<item>`."""
    logger = logging.getLogger(TASK_RUN_LOGGER)
    run_filter = CorrelationFilter(flow_run_id, instance_id)
    logger.addFilter(run_filter)
    try:
        yield
    finally:
        logger.removeFilter(run_filter)


def log_failed_attempt(context: ItemContext, attempt: int, error: BaseException, retrying: bool) -> None:
    """One line per failed attempt, in the item's correlated log: a warning while it will be
    retried; an error with the processor's traceback (its own frames) when it is the last.
    The sync and async item paths both say it so."""
    log = item_logger(context)
    if retrying:
        log.warning("attempt %d failed (%s); retrying", attempt, describe(error))
    else:
        log.error("attempt %d failed (%s)", attempt, describe(error), exc_info=error)

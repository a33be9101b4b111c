"""A sync item's attempts under the retry policy: the steps it takes on a thread and in a worker process alike.

Every attempt sees `current_item()` (instance, item, attempt: the correlation id of its log lines),
and each failed one is logged under that id. The outcome carries the attempts made and the time spent
in them; the item's checkpoint is the caller's (src/fanout/engine/item_path.py).
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from fanout.core.item_context import ItemContext, entering, leaving, processing
from fanout.core.outcome import ItemOutcome, describe
from fanout.engine.item_logging import log_failed_attempt
from fanout.engine.processor import Processor
from fanout.engine.retry_policy import RetryPolicy


def attempt_item(
    function: Processor,
    item: str,
    value: Any,
    retry: RetryPolicy,
    instance_id: str,
    made: int = 0,
    stage: str | None = None,
) -> ItemOutcome:
    """Run `function` on `value` (item `item`) under `retry`, `made` attempts having been made already;
    its outcome, never an exception.

    The first attempt is made here, in line: nearly every item succeeds at once,
    and the closures of the retry loop cost about as much as a trivial item's
    checkpoint. A failure worth another attempt goes on in `retry`'s loop
    (stamina's waits and jitter), with this attempt counted as its first.
    """
    number = made + 1
    token = entering(instance_id, item, number, stage)
    started = time.perf_counter()
    try:
        result = function(value)
    except Exception as error:  # noqa: BLE001 - logged here, then retried or made the outcome
        context = ItemContext(instance_id, item, number, stage)
        log_failed_attempt(context, number, error, retrying=retry.will_retry(error, number))
        failed = error
    else:
        return ItemOutcome(item, result, None, number, False, time.perf_counter() - started)
    finally:
        leaving(token)
    return _retried(function, item, value, retry, instance_id, stage, made, failed, time.perf_counter() - started)


def _retried(
    function: Processor,
    item: str,
    value: Any,
    retry: RetryPolicy,
    instance_id: str,
    stage: str | None,
    made: int,
    first: Exception,
    first_spent: float,
) -> ItemOutcome:
    """The attempts after a failed one (`first`, attempt `made + 1`), as many as the policy has left."""
    attempts = made + 1
    spent = first_spent

    def attempt() -> Any:
        nonlocal attempts, spent
        attempts += 1
        started = time.perf_counter()
        with processing(instance_id, item, attempts, stage) as active:
            try:
                return function(value)
            except Exception as error:
                log_failed_attempt(active.context, attempts, error, retrying=retry.will_retry(error, attempts))
                raise
            finally:
                spent += time.perf_counter() - started

    remaining = dataclasses.replace(retry, retries=max(0, retry.retries - made))
    try:
        result = remaining.retry_after(first, attempt)
    except Exception as error:  # noqa: BLE001 - the item's last error is its outcome
        return ItemOutcome(item=item, error=describe(error), attempts=attempts, duration=spent)
    return ItemOutcome(item=item, value=result, attempts=attempts, duration=spent)

"""A `durable_map` stage: its function (plain, async, a Prefect task), its name, and calls outside a flow."""

from __future__ import annotations

import functools
import uuid

import pytest
from prefect import task

from fanout import NotInFlow, durable_map
from fanout.core.errors import InvalidRequest
from fanout.engine.processor_kind import InvalidProcessor
from fanout.engine.retry_policy import TRANSIENT_ERRORS, RetryPolicy
from fanout.engine.stage import StageNames, check_stage, forget_stage_names, stage_function, stage_names


def shout(word: str) -> str:
    return word.upper()


async def shout_later(word: str) -> str:
    return word.upper()


class Shouter:
    def __call__(self, word: str) -> str:
        return word.upper()


def test_a_plain_function_runs_on_threads_under_its_own_name() -> None:
    """A plain function is called as it is; its name names the task runs and the stage."""
    resolved = stage_function(shout)
    assert (resolved.function, resolved.kind, resolved.name, resolved.qualified) == (shout, "sync", "shout", "shout")
    assert resolved.retry is None


def test_an_async_function_runs_on_an_event_loop() -> None:
    """An `async def` function is of the async kind."""
    assert stage_function(shout_later).kind == "async"


def test_a_prefect_task_gives_its_function_name_and_retries() -> None:
    """A `@task`'s function is called; its name and retry settings apply, for any exception."""

    @task(name="shouting", retries=4, retry_delay_seconds=[2, 10], retry_jitter_factor=0.1)
    def loud(word: str) -> str:
        return word.upper()

    resolved = stage_function(loud)
    assert resolved.function is loud.fn and resolved.name == "shouting"
    assert resolved.retry == RetryPolicy(retries=4, delay_seconds=2.0, jitter_factor=0.1, retry_on=(Exception,))


def test_a_task_without_retries_is_not_retried() -> None:
    """A `@task` with no retries of its own gets none."""
    assert stage_function(task(shout)).retry == RetryPolicy(0, 0.0, 0.0, (Exception,))


def test_a_plain_function_keeps_the_transient_errors_policy() -> None:
    """Without a task, the settings' policy (transient errors only) is the one that applies."""
    assert RetryPolicy().retry_on == TRANSIENT_ERRORS


def test_a_partial_and_a_callable_object_are_named_by_what_they_wrap() -> None:
    """`functools.partial(fn, ...)` is named as `fn`; a callable object by its class."""
    assert stage_function(functools.partial(shout)).qualified == "shout"
    assert stage_function(Shouter()).name == "Shouter"


def test_a_nested_function_or_lambda_gets_a_path_safe_stage_name() -> None:
    """`<locals>` and `<lambda>` become safe characters in the default stage name."""

    def inner(word: str) -> str:
        return word

    assert check_stage(stage_function(inner).qualified).endswith("_locals_.inner")
    assert check_stage(stage_function(lambda word: word).qualified).endswith("_lambda_")


def test_a_generator_function_is_refused() -> None:
    """A generator does not return one result per item."""

    def numbers(item: str):  # type: ignore[no-untyped-def]
        yield item

    with pytest.raises(InvalidProcessor, match="generator"):
        stage_function(numbers)


@pytest.mark.parametrize("stage", ["", "a/b", "../up", "-dash", "x" * 201])
def test_a_stage_name_that_cannot_name_a_folder_is_refused(stage: str) -> None:
    """Explicit stage names are letters, digits, '_', '.', ':' and '-'."""
    with pytest.raises(InvalidRequest, match="stage"):
        check_stage(stage)


def test_repeated_calls_of_one_function_get_numbered_stages() -> None:
    """The second and third call of a function get `-2`, `-3`; another function or instance starts at one."""
    names = StageNames()
    assert [names.next("inst", "shout") for _ in range(3)] == ["shout", "shout-2", "shout-3"]
    assert names.next("other", "shout") == "shout" and names.next("inst", "whisper") == "whisper"


def test_a_retried_flow_run_numbers_its_stages_afresh() -> None:
    """A flow run's next attempt (its run count) has names of its own; the first call of an attempt says so."""
    run = uuid.uuid4()
    first, new = stage_names(run, 1)
    assert new and stage_names(run, 1) == (first, False)
    first.next("inst", "shout")
    retried, new = stage_names(run, 2)
    assert new and retried.next("inst", "shout") == "shout"
    forget_stage_names(run, 1)
    assert stage_names(run, 1)[1]


def test_outside_a_flow_run_durable_map_says_how_to_fix_it() -> None:
    """Called outside a flow, durable_map raises `NotInFlow` naming @flow and the test harness."""
    with pytest.raises(NotInFlow, match=r"@prefect\.flow.*prefect_test_harness"):
        durable_map(shout, ["a"])

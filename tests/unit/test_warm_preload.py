"""The forkserver's head start: the models every flow-run process would build first are built before it forks."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict

from fanout.worker.warm_preload import complete_models, model_classes
from fanout.worker.warm_processes import WARMING_MODULE, preload_modules


def test_a_model_that_defers_its_schema_is_built_ahead_of_its_first_use() -> None:
    """A model defined with a deferred schema is complete after `complete_models`."""

    class Deferred(BaseModel):
        model_config = ConfigDict(defer_build=True)
        name: str

    assert not Deferred.__pydantic_complete__
    assert complete_models([Deferred]) == 1
    assert Deferred.__pydantic_complete__


def test_a_model_whose_reference_is_not_defined_yet_is_left_to_its_first_use() -> None:
    """A forward reference that cannot be resolved leaves the model as it was, without an error."""

    class Dangling(BaseModel):
        other: Undefined  # type: ignore[name-defined]  # noqa: F821 - the point of the test

    assert complete_models([Dangling]) == 0
    assert not Dangling.__pydantic_complete__


def test_every_model_subclass_is_found_at_any_depth() -> None:
    """Subclasses of subclasses are among the models looked at."""

    class Parent(BaseModel):
        pass

    class Child(Parent):
        pass

    assert {Parent, Child} <= set(model_classes())


def test_the_warming_module_is_preloaded_after_every_other_module() -> None:
    """The module that builds the models comes last, after the flow's and the processor's modules."""
    assert preload_modules("flows.http_enrich:enrich")[-1] == WARMING_MODULE


def test_the_seed_s_first_run_work_is_done_by_its_warm_up() -> None:
    """After `warm_up` the seed's item tasks are made: its first run finds them."""
    from fanout.engine.tasks import item_tasks
    from fanout.seed import TASK_NAME, warm_up

    item_tasks.cache_clear()
    warm_up()
    made = item_tasks.cache_info().hits
    item_tasks(TASK_NAME)
    assert item_tasks.cache_info().hits == made + 1


def test_a_flow_setting_that_cannot_be_read_is_left_to_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The forkserver's warm-up does not fail on a bad flow setting: the run that reads it reports it."""
    from pydantic import ValidationError

    from fanout.core.settings import flow_settings
    from fanout.seed import warm_up

    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "0")
    warm_up()
    with pytest.raises(ValidationError):
        flow_settings()

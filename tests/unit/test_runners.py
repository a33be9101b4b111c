"""Choosing the task runner and the global-limit slot from settings."""

from __future__ import annotations

import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from fanout.core.settings import FanoutSettings
from fanout.engine.concurrency import ItemSlot
from fanout.engine.runners import local_cluster_options, task_runner


def settings(**fields: object) -> FanoutSettings:
    return FanoutSettings(_env_file=None, **fields)  # type: ignore[arg-type]


def test_the_default_runner_is_a_thread_pool_bounded_by_max_parallel() -> None:
    """Threads never grow with the number of items: the pool has `max_parallel` workers."""
    runner = task_runner(settings(max_parallel=5))
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 5


def test_dask_without_an_address_gets_a_local_cluster_sharing_max_parallel() -> None:
    """A LocalCluster of `dask_workers` processes splits `max_parallel` threads between them."""
    pytest.importorskip("prefect_dask")
    runner = task_runner(settings(task_runner="dask", dask_workers=2, max_parallel=8))
    assert runner.cluster_kwargs == local_cluster_options(settings(dask_workers=2, max_parallel=8))
    assert local_cluster_options(settings(dask_workers=2, max_parallel=8))["threads_per_worker"] == 4


def test_dask_with_an_address_uses_that_cluster() -> None:
    """`FANOUT_DASK_ADDRESS` points the runner at an existing scheduler."""
    pytest.importorskip("prefect_dask")
    runner = task_runner(settings(task_runner="dask", dask_address="tcp://127.0.0.1:8786"))
    assert runner.address == "tcp://127.0.0.1:8786"


def test_an_unknown_runner_is_rejected() -> None:
    """Only `thread` and `dask` are accepted."""
    with pytest.raises(ValueError):
        settings(task_runner="ray")


def test_without_a_limit_name_a_slot_costs_nothing() -> None:
    """No global limit configured: `before_item` holds nothing and makes no API call."""
    with ItemSlot(None, hold_seconds=1.0) as slot:
        slot.before_item()
        assert slot._held is None

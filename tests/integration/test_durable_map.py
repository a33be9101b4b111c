"""`durable_map` inside a user's own flow: results in order, stages, identity, failures, and what Prefect shows."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import prefect
import pytest
from packaging.version import Version
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId
from prefect.logging.handlers import APILogWorker

import fanout
from fanout import DuplicateItems, ItemsFailed, TransientError, current_item, durable_map, durable_map_async
from fanout.localstack.polling import wait_for
from fanout.storage.instance_results import InstanceResults
from tests.conftest import REPO_ROOT
from tests.support.processors import executed
from tests.support.user_flows import PRICE_STAGE, TAX_STAGE, expected_total, order_total, orders

CALLS: list[str] = []


def double(number: int) -> int:
    """Twice the item."""
    CALLS.append(current_item().idempotency_key)
    return number * 2


async def slow_double(number: int) -> int:
    """Twice the item, after awaiting a little."""
    await asyncio.sleep(0.01)
    return number * 2


def broken_at_three(number: int) -> int:
    """Fails for item 3, for good."""
    if number == 3:
        raise ValueError("three is broken")
    return number


def fresh(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@flow
def doubled(items: list[Any], instance_id: str | None = None) -> list[Any]:
    return durable_map(double, items, instance_id=instance_id)


def test_results_come_back_in_item_order_with_repeats() -> None:
    """A plain function over a list with repeated items gives one result per position, in order."""
    assert doubled([3, 1, 3, 2]) == [6, 2, 6, 4]


def test_a_generator_is_read_once_in_order() -> None:
    """Items may come from a generator."""

    @flow
    def from_generator(count: int) -> list[int]:
        return durable_map(double, (number for number in range(count)))

    assert from_generator(150) == [number * 2 for number in range(150)]


def test_an_async_function_runs_on_an_event_loop() -> None:
    """An `async def` function's items are awaited and come back in order."""

    @flow
    def awaited(count: int) -> list[int]:
        return durable_map(slow_double, range(count))

    assert awaited(30) == [number * 2 for number in range(30)]


def test_an_async_flow_awaits_durable_map_async() -> None:
    """In an `async def` flow, `await durable_map_async(...)` gives the same results, and its report is published."""
    instance = fresh("async-flow")

    @flow
    async def async_flow(count: int) -> list[int]:
        return await durable_map_async(double, range(count), instance_id=instance)

    assert asyncio.run(async_flow(5)) == [0, 2, 4, 6, 8]
    assert len(item_table(f"{instance}/double")) == 5


def item_table(scope: str) -> list[dict[str, Any]]:
    """The rows of the newest item table published for `scope` (`<instance>/<stage>`)."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from fanout.engine.report import artifact_key

    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(scope, "items")])), limit=1
        )
    rows: list[dict[str, Any]] = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data  # type: ignore[assignment]
    return rows


def test_a_rerun_of_the_instance_runs_nothing_again() -> None:
    """Every item checkpointed: the same instance's next run executes none of them."""
    instance = fresh("rerun")
    CALLS.clear()
    assert doubled([1, 2, 3], instance_id=instance) == [2, 4, 6]
    assert doubled([1, 2, 3], instance_id=instance) == [2, 4, 6]
    assert len(CALLS) == 3


def test_a_finished_flow_call_leaves_the_results_index_up_to_date(clean_settings: Path) -> None:
    """Once the flow returns, every item's record is in the instance's results index: a page scans no journal."""
    instance = fresh("indexed")
    assert doubled(list(range(40)), instance_id=instance) == [number * 2 for number in range(40)]
    results = InstanceResults(str(clean_settings), instance)
    assert results.index is not None and None not in results.index.locate(0, 40)


def test_two_calls_of_one_function_are_two_stages() -> None:
    """A second call of the same function in a flow has checkpoints and ids of its own."""
    instance = fresh("stages")

    @flow
    def twice(items: list[int]) -> list[int]:
        first = durable_map(double, items, instance_id=instance)
        return durable_map(double, first, instance_id=instance)

    CALLS.clear()
    assert twice([1, 2]) == [4, 8]
    stage = "double"
    assert CALLS[:2] != CALLS[2:]
    assert sorted(CALLS) == sorted(
        [f"{instance}/{stage}/0", f"{instance}/{stage}/1", f"{instance}/{stage}-2/0", f"{instance}/{stage}-2/1"]
    )


def test_items_keyed_by_a_field_resume_in_any_order() -> None:
    """With `key="id"`, a rerun with the items reordered runs nothing again and answers in the new order."""
    instance = fresh("by-field")

    @flow
    def by_field(items: list[dict[str, Any]]) -> list[int]:
        return durable_map(lambda item: double(item["n"]), items, key="id", instance_id=instance)

    CALLS.clear()
    items = [{"id": "a", "n": 1}, {"id": "b", "n": 2}]
    assert by_field(items) == [2, 4]
    assert by_field(list(reversed(items))) == [4, 2]
    assert len(CALLS) == 2


def test_items_keyed_by_a_function_name_their_task_runs() -> None:
    """`key=` a function names each item's checkpoint and id by what it returns."""
    instance = fresh("by-function")

    @flow
    def by_function(items: list[int]) -> list[int]:
        return durable_map(double, items, key=lambda number: f"n{number}", instance_id=instance, stage="doubling")

    CALLS.clear()
    assert by_function([5, 6]) == [10, 12]
    assert sorted(CALLS) == [f"{instance}/doubling/n5", f"{instance}/doubling/n6"]


def test_two_items_with_one_key_are_refused_before_anything_runs() -> None:
    """Duplicate keys raise `DuplicateItems` naming them; no item ran."""

    @flow
    def duplicated() -> list[int]:
        return durable_map(double, [1, 1], key=str)

    CALLS.clear()
    with pytest.raises(DuplicateItems, match="'1' at 0, 1"):
        duplicated()
    assert CALLS == []


def test_a_source_is_streamed_as_items(tmp_path: Path) -> None:
    """`fanout.source(uri)` items are read from the file, in order."""
    lines = tmp_path / "numbers.jsonl"
    lines.write_text("1\n2\n3\n")

    @flow
    def from_source(uri: str) -> list[int]:
        return durable_map(double, fanout.source(uri))

    assert from_source(str(lines)) == [2, 4, 6]


def test_a_prefect_task_brings_its_own_retries_and_name() -> None:
    """A `@task` with retries=2 is retried on any exception; its task runs carry its name."""
    attempts: list[int] = []

    @task(name="flaky-step", retries=2, retry_delay_seconds=0)
    def flaky(number: int) -> int:
        attempts.append(current_item().attempt)
        if current_item().attempt < 3:
            raise KeyError("not yet")
        return number

    @flow
    def with_task() -> list[int]:
        return durable_map(flaky, [7])

    assert with_task() == [7]
    assert attempts == [1, 2, 3]


def test_a_transient_error_is_retried_for_a_plain_function() -> None:
    """A plain function raising `TransientError` once is retried and succeeds."""
    seen: list[int] = []

    def once_transient(number: int) -> int:
        seen.append(number)
        if len(seen) == 1:
            raise TransientError("try again")
        return number

    @flow
    def retried() -> list[int]:
        return durable_map(once_transient, [4])

    assert retried() == [4] and seen == [4, 4]


def test_a_failed_item_raises_items_failed_after_its_siblings_finish() -> None:
    """Item 3 fails for good: the others ran, and `ItemsFailed` names item 3's position and error."""
    ran: list[int] = []

    def record(number: int) -> int:
        ran.append(number)
        return broken_at_three(number)

    @flow
    def failing() -> list[int]:
        return durable_map(record, [1, 2, 3, 4, 5])

    with pytest.raises(ItemsFailed, match="2: ValueError: three is broken"):
        failing()
    assert sorted(ran) == [1, 2, 3, 4, 5]


def test_tolerated_failures_leave_none_and_are_listed() -> None:
    """Within `tolerated_failure_count` the call returns None in the failed slot and lists the failure."""

    @flow
    def tolerant() -> dict[str, Any]:
        results = durable_map(broken_at_three, [1, 3, 5], tolerated_failure_count=1)
        return {"results": list(results), "failed": [failure["item"] for failure in results.failures]}

    assert tolerant() == {"results": [1, None, 5], "failed": ["1"]}


@pytest.mark.skipif(
    Version(prefect.__version__) < Version("3.5"),
    reason="Prefect before 3.5 records the siblings' task-run states too late for this read-back",
)
def test_prefect_shows_the_failed_items_task_run_failed_and_its_traceback() -> None:
    """The failed item's task run ends Failed naming it; its siblings Completed; its traceback is in the run's logs."""

    @flow
    def tolerant_run() -> str:
        durable_map(broken_at_three, [1, 3, 5], tolerated_failure_count=1, name="checked")
        from prefect.runtime import flow_run

        return str(flow_run.get_id())

    run_id = tolerant_run()
    APILogWorker.drain_all(timeout=10)
    expected = {"checked-0": "COMPLETED", "checked-1": "FAILED", "checked-2": "COMPLETED"}
    states: dict[str, Any] = {}

    def recorded() -> bool:  # Prefect records task runs from their state events, after the flow returns
        with get_client(sync_client=True) as client:
            task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])))
        states.update({run.name: run.state for run in task_runs})
        return {name: states[name].type.value for name in expected if states.get(name)} == expected

    wait_for(recorded, 30, "the task runs' final states", interval=0.2)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    failed = states["checked-1"]
    assert failed is not None and "1: ValueError: three is broken" in (failed.message or "")
    [traceback] = [log.message for log in logs if "Traceback" in log.message and "attempt 1 failed" in log.message]
    assert f"[{run_id}/broken_at_three/1]" in traceback
    assert 'raise ValueError("three is broken")' in traceback


def test_a_user_flow_killed_half_way_resumes_each_stage(
    prefect_api: str, clean_settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two stages, SIGKILLed mid-stage one, then mid-stage two: each rerun runs only the unfinished items."""
    count = 12
    instance = fresh("killed")
    log_dir = tmp_path / "executions"
    log_dir.mkdir()
    everything = {f"price-order-{n}" for n in range(1, count + 1)} | {f"with_tax-{n}" for n in range(count)}
    first = run_order_total(prefect_api, log_dir, instance, count, kill_after=count // 2)
    assert first.returncode == -9, first.stderr
    after_first = finished(clean_settings, instance, count)
    unpriced = {item for item in everything - after_first if item.startswith("price-")}
    assert 0 < len(unpriced) < count

    clear(log_dir)
    second = run_order_total(prefect_api, log_dir, instance, count, kill_after=len(unpriced) + count // 2)
    assert second.returncode == -9, second.stderr
    after_second = finished(clean_settings, instance, count)
    assert {item for item in executed(log_dir) if item.startswith("price-")} == unpriced
    assert all(item.startswith("with_tax-") for item in everything - after_second)

    clear(log_dir)
    monkeypatch.setenv("FANOUT_TEST_LOG_DIR", str(log_dir))  # the last run dies nowhere: it runs in this process
    assert order_total(orders(count), instance_id=instance) == expected_total(count)
    assert sorted(executed(log_dir)) == sorted(everything - after_second)


def run_order_total(
    api_url: str, log_dir: Path, instance: str, count: int, kill_after: int = 0
) -> subprocess.CompletedProcess[str]:
    """The user's flow in a process of its own, against the session's server."""
    env = {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PYTHONPATH": str(REPO_ROOT),
        "FANOUT_TEST_LOG_DIR": str(log_dir),
        "FANOUT_TEST_KILL_AFTER": str(kill_after),
    }
    return subprocess.run(
        [sys.executable, "-m", "tests.support.user_flows", instance, str(count)],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        cwd=REPO_ROOT,
    )


def finished(results: Path, instance: str, count: int) -> set[str]:
    """`<stage>-<key>` of every item with a whole checkpoint record, in both stages."""
    from prefect.filesystems import LocalFileSystem

    from fanout.storage.checkpoints import CheckpointStore

    storage = LocalFileSystem(basepath=str(results))
    priced = CheckpointStore(storage, instance, PRICE_STAGE).load(order["id"] for order in orders(count))
    taxed = CheckpointStore(storage, instance, TAX_STAGE).load(str(n) for n in range(count))
    return {f"price-{key}" for key in priced} | {f"with_tax-{key}" for key in taxed}


def clear(folder: Path) -> None:
    for path in folder.iterdir():
        path.unlink()


def test_order_total_runs_in_process() -> None:
    """The user's two-stage flow, called directly, returns the totals."""
    assert order_total(orders(4), instance_id=fresh("orders")) == expected_total(4)


def test_each_stage_publishes_its_own_item_table() -> None:
    """A two-stage flow's item tables are one per stage, their rows naming `<instance>/<stage>/<key>`."""
    instance = fresh("tables")
    order_total(orders(2), instance_id=instance)
    for stage, keys in ((PRICE_STAGE, ["order-1", "order-2"]), (TAX_STAGE, ["0", "1"])):
        rows = item_table(f"{instance}/{stage}")
        assert [row["correlation_id"] for row in rows] == [f"{instance}/{stage}/{key}" for key in keys]


def test_a_flow_may_return_the_results_as_its_completed_state() -> None:
    """The docs' tip: a flow returning `Completed(data=results)` hands its caller the list."""
    from prefect.states import Completed

    @flow
    def as_state(count: int) -> list[int]:
        return Completed(data=durable_map(double, range(count)))  # type: ignore[return-value]

    assert as_state(3) == [0, 2, 4]

"""The flow under Prefect: seed output, order, retries, failures, checkpoints, the concurrency cap."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest
from prefect.client.schemas.objects import StateType

from fanout.core.errors import InvalidRequest, ItemsFailed, ProcessorNotFound
from fanout.inputs.request import FanoutRequest
from fanout.seed import fan_out_fan_in
from tests.support.processors import RECORDER, executed

SEED_OUTPUT = [f"Processed item-{i}" for i in range(1, 6)]


def test_defaults_return_the_seeds_output() -> None:
    """With no input the flow returns the seed's five results, in order."""
    assert fan_out_fan_in() == SEED_OUTPUT


# One task run per item costs the most: 48 of them, three rounds of the 16 slots, finish out of order too;
# batches need more items than `per_item_task_limit` (100).
@pytest.mark.parametrize(("batch_size", "count"), [("1", 48), ("0", 200)], ids=["per-item", "batched"])
def test_order_is_kept_when_items_finish_out_of_order(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path, batch_size: str, count: int
) -> None:
    """Items that sleep random times come back in item order."""
    monkeypatch.setenv("FANOUT_TEST_SLEEP_MAX", "0.02")
    monkeypatch.setenv("FANOUT_BATCH_SIZE", batch_size)
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "16")
    assert fan_out_fan_in(FanoutRequest(count=count)) == [f"Processed item-{i}" for i in range(1, count + 1)]


@pytest.mark.parametrize("count", [5, 150], ids=["per-item", "batched"])
def test_transient_error_is_retried_and_the_run_completes(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path, count: int
) -> None:
    """An item whose first attempt raises TransientError runs twice and the run completes."""
    monkeypatch.setenv("FANOUT_TEST_FLAKY", "item-3")
    output = fan_out_fan_in(FanoutRequest(count=count))
    assert output[2] == "Processed item-3"
    assert executed(execution_log).count("item-3") == 2


@pytest.mark.parametrize("count", [5, 150], ids=["per-item", "batched"])
def test_permanent_error_fails_the_run_after_siblings_finish(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path, count: int
) -> None:
    """A broken item is not retried, fails the run by name, and its siblings are checkpointed."""
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-2,item-4")
    with pytest.raises(
        ItemsFailed, match=r"2 of \d+ items failed: item-2: ValueError: item-2 is broken; item-4"
    ) as failed:
        fan_out_fan_in(FanoutRequest(count=count, instance_id="partial"))
    assert [item for item, _ in failed.value.failures] == ["item-2", "item-4"]
    assert executed(execution_log).count("item-2") == 1
    monkeypatch.delenv("FANOUT_TEST_FAIL")
    for path in execution_log.iterdir():
        path.unlink()
    assert fan_out_fan_in(FanoutRequest(count=count, instance_id="partial"))[1] == "Processed item-2"
    assert executed(execution_log) == ["item-2", "item-4"]


def test_rerun_of_an_instance_executes_nothing(execution_log: Path) -> None:
    """Running a finished instance again returns its output from checkpoints alone."""
    first = fan_out_fan_in(FanoutRequest(count=5, instance_id="again"))
    second = fan_out_fan_in(FanoutRequest(count=5, instance_id="again"))
    assert first == second == SEED_OUTPUT
    assert len(executed(execution_log)) == 5


def test_rerun_of_a_finished_instance_reads_its_recorded_output(execution_log: Path, clean_settings: Path) -> None:
    """A finished instance's output is recorded whole: a rerun needs no per-item checkpoint."""
    first = fan_out_fan_in(FanoutRequest(count=150, instance_id="recorded"))
    for journal in clean_settings.rglob("journal-*"):
        journal.unlink()
    second = fan_out_fan_in(FanoutRequest(count=150, instance_id="recorded"))
    assert first == second == [f"Processed item-{i}" for i in range(1, 151)]
    assert len(executed(execution_log)) == 150


def test_a_run_with_a_failed_item_records_no_output(monkeypatch: pytest.MonkeyPatch, execution_log: Path) -> None:
    """Tolerated failures leave no output record, so a rerun executes the failed item again."""
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-3")
    request = FanoutRequest(count=150, instance_id="tolerated", tolerated_failure_count=1)
    assert fan_out_fan_in(request)[2] is None
    monkeypatch.delenv("FANOUT_TEST_FAIL")
    assert fan_out_fan_in(request)[2] == "Processed item-3"
    assert executed(execution_log).count("item-3") == 2


def test_a_different_instance_does_its_own_work(execution_log: Path) -> None:
    """Another instance id reuses no checkpoint."""
    fan_out_fan_in(FanoutRequest(count=5, instance_id="one"))
    fan_out_fan_in(FanoutRequest(count=5, instance_id="two"))
    assert len(executed(execution_log)) == 10


def test_unset_instance_id_scopes_checkpoints_to_the_flow_run(execution_log: Path) -> None:
    """Without an instance id every run is its own instance."""
    fan_out_fan_in(FanoutRequest(count=3))
    fan_out_fan_in(FanoutRequest(count=3))
    assert len(executed(execution_log)) == 6


@pytest.mark.parametrize("count", [40, 400], ids=["per-item", "batched"])
def test_in_flight_items_never_exceed_max_parallel(monkeypatch: pytest.MonkeyPatch, count: int) -> None:
    """A recorder in the processor sees at most `max_parallel` items at once."""
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.processors:recorded")
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "3")
    monkeypatch.setenv("FANOUT_CPU_BOUND_PROCESSES", "false")  # the recorder counts items on these threads
    RECORDER.reset()
    fan_out_fan_in(FanoutRequest(count=count))
    assert RECORDER.started == count and 2 <= RECORDER.peak <= 3


@pytest.mark.parametrize(
    "request_",
    [
        FanoutRequest(count=0),
        FanoutRequest(count=-1),
        FanoutRequest(count=11),
        FanoutRequest(items=[]),
        FanoutRequest(items=["a", "a"]),
    ],
)
def test_bad_input_starts_no_item(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path, request_: FanoutRequest
) -> None:
    """A request that cannot run fails before any item starts."""
    monkeypatch.setenv("FANOUT_MAX_ITEMS", "10")
    with pytest.raises(InvalidRequest):
        fan_out_fan_in(request_)
    assert executed(execution_log) == []


def test_unimportable_processor_fails_before_any_item(monkeypatch: pytest.MonkeyPatch) -> None:
    """A processor that cannot be imported is reported before fan-out."""
    monkeypatch.setenv("FANOUT_PROCESSOR", "no_such_module:run")
    with pytest.raises(ProcessorNotFound, match="no_such_module"):
        fan_out_fan_in()


@pytest.mark.parametrize("count", [5, 150], ids=["per-item", "batched"])
def test_processor_sees_a_stable_idempotency_key(
    monkeypatch: pytest.MonkeyPatch, execution_log: Path, count: int
) -> None:
    """Every attempt of an item sees `<instance_id>/<item>`, with its attempt number."""
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.processors:keyed")
    monkeypatch.setenv("FANOUT_TEST_FLAKY", "item-2")
    output = fan_out_fan_in(FanoutRequest(count=count, instance_id="keys"))
    assert output[:3] == ["keys/item-1", "keys/item-2", "keys/item-3"]
    attempts = sorted(path.read_text() for path in execution_log.glob("item-2.*"))
    assert attempts == ["keys/item-2 1", "keys/item-2 2"]


def test_a_named_run_here_is_created_with_its_name_and_its_instance_tag(execution_log: Path) -> None:
    """`run_here` with a name and an instance: one flow run, of that name, tagged with the instance, Completed."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from fanout.engine.instance_lease import instance_tag
    from fanout.seed import run_here

    name = f"named-{uuid4().hex[:8]}"
    assert run_here(FanoutRequest(count=2, instance_id=name), flow_run_name=name) == SEED_OUTPUT[:2]
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])))
    assert [(run.name, instance_tag(name) in run.tags, run.state_type) for run in runs] == [
        (name, True, StateType.COMPLETED)
    ]

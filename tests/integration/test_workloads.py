"""Real workloads through the flow: JSON items, sources, async processors, results read while running."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from fanout.core.errors import InvalidRequest, ItemsFailed
from fanout.inputs.request import FanoutRequest
from fanout.inputs.sources import ItemSource
from fanout.seed import fan_out_fan_in
from fanout.storage.instance_results import InstanceResults
from tests.support.processors import executed

SCRIPTED_ASYNC = "tests.support.workload_processors:scripted_async"


def test_object_items_with_item_key_reach_the_processor(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each object item is handed to the processor as given, results in item order."""
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.workload_processors:echo")
    items = [{"id": 2, "url": "b"}, {"id": 1, "url": "a"}]
    assert fan_out_fan_in(FanoutRequest(items=items, item_key="id")) == [{"got": item} for item in items]


def test_object_items_without_item_key_run_once_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects without `item_key` are keyed by digest and each runs."""
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.workload_processors:echo_async")
    items = [{"a": 1}, [1, 2], 3, "item-4"]
    assert fan_out_fan_in(FanoutRequest(items=items)) == [{"got": item} for item in items]


def test_duplicate_keys_fail_before_any_item_runs(monkeypatch: pytest.MonkeyPatch, execution_log: Path) -> None:
    """Two items with one key stop the run before anything executes."""
    with pytest.raises(InvalidRequest, match="more than once"):
        fan_out_fan_in(FanoutRequest(items=[{"id": 1}, {"id": 1}], item_key="id"))
    assert executed(execution_log) == []


@pytest.mark.parametrize(
    "name, text, fmt",
    [
        ("rows.jsonl", '{"id": "a"}\n{"id": "b"}\n', "jsonl"),
        ("rows.json", '[{"id": "a"}, {"id": "b"}]', "json"),
        ("rows.csv", "id,n\na,1\nb,2\n", "csv"),
    ],
)
def test_sources_feed_the_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, text: str, fmt: str) -> None:
    """A source's items are run in file order, whatever its format."""
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.workload_processors:echo")
    (tmp_path / name).write_text(text)
    output = fan_out_fan_in(FanoutRequest(source=ItemSource(uri=str(tmp_path / name), format=fmt), item_key="id"))
    assert [row["got"]["id"] for row in output] == ["a", "b"]


def test_async_processor_retries_a_transient_error(monkeypatch: pytest.MonkeyPatch, execution_log: Path) -> None:
    """An async item that fails once with TransientError runs twice and the run completes in order."""
    monkeypatch.setenv("FANOUT_PROCESSOR", SCRIPTED_ASYNC)
    monkeypatch.setenv("FANOUT_TEST_FLAKY", "item-3")
    output = fan_out_fan_in(FanoutRequest(count=150))
    assert output == [f"Processed item-{index}" for index in range(1, 151)]
    assert executed(execution_log).count("item-3") == 2


def test_failed_async_run_keeps_partial_results(monkeypatch: pytest.MonkeyPatch, clean_settings: Path) -> None:
    """A Failed run's results hold every succeeded item and the failed one's error."""
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.workload_processors:not_json")
    with pytest.raises(ItemsFailed):
        fan_out_fan_in(FanoutRequest(items=["a", 2, 3], instance_id="partial"))
    rows = InstanceResults(str(clean_settings.resolve()), "partial").page(0, 10).items
    assert [row.status for row in rows] == ["failed", "completed", "completed"]
    assert rows[0].error is not None and "not JSON" in rows[0].error and rows[1].result == 2


def test_results_are_paged_while_the_run_goes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clean_settings: Path
) -> None:
    """While items still run, the finished ones are readable and the rest are pending."""
    gate = tmp_path / "gate"
    monkeypatch.setenv("FANOUT_PROCESSOR", SCRIPTED_ASYNC)
    monkeypatch.setenv("FANOUT_TEST_GATE", str(gate))
    run = threading.Thread(target=fan_out_fan_in, args=(FanoutRequest(count=10, instance_id="live"),))
    run.start()
    try:
        deadline = time.monotonic() + 60
        statuses: list[str] = []
        while time.monotonic() < deadline:
            try:
                statuses = [
                    row.status for row in InstanceResults(str(clean_settings.resolve()), "live").page(0, 10).items
                ]
            except LookupError:
                statuses = []
            if statuses.count("completed") == 4:
                break
            time.sleep(0.05)
        assert statuses == ["completed"] * 4 + ["pending"] * 6
    finally:
        gate.touch()
        run.join(60)
    assert [row.status for row in InstanceResults(str(clean_settings.resolve()), "live").page(0, 10).items] == [
        "completed"
    ] * 10


def test_async_crash_resumes_with_only_unfinished_items(
    monkeypatch: pytest.MonkeyPatch, cli, cli_here, execution_log: Path, clean_settings: Path
) -> None:  # type: ignore[no-untyped-def]
    """An async run killed mid-way runs again only the items without a checkpoint."""
    monkeypatch.setenv("FANOUT_PROCESSOR", SCRIPTED_ASYNC)
    monkeypatch.setenv("FANOUT_TEST_CRASH_AT", "item-12")
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "4")
    crashed = cli("run", "--count", "30", "--instance-id", "async-crash")
    assert crashed.returncode == 17, crashed.stderr[-2000:]
    rows = InstanceResults(str(clean_settings.resolve()), "async-crash").page(0, 30).items
    finished = {row.key for row in rows if row.status == "completed"}
    before = executed(execution_log)
    for path in execution_log.iterdir():
        path.unlink() if path.name != "crashed" else None
    monkeypatch.delenv("FANOUT_TEST_CRASH_AT")  # the rerun runs in this process
    resumed = cli_here("run", "--count", "30", "--instance-id", "async-crash")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert json.loads(resumed.stdout) == [f"Processed item-{index}" for index in range(1, 31)]
    again = set(executed(execution_log))
    assert finished and not again & finished and again == {f"item-{index}" for index in range(1, 31)} - finished
    assert len(before) >= len(finished)


def test_cli_runs_a_source_and_prints_results(cli_here, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`fanout run --source` prints the output list; `fanout results` prints one JSON line per item."""
    source = tmp_path / "ids.txt"
    source.write_text("item-1\nitem-2\n")
    ran = cli_here("run", "--source", str(source), "--format", "lines", "--instance-id", "from-file")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert json.loads(ran.stdout) == ["Processed item-1", "Processed item-2"]
    results = cli_here("results", "from-file")
    rows = [json.loads(line) for line in results.stdout.splitlines()]
    assert [(row["index"], row["key"], row["status"], row["result"]) for row in rows] == [
        (0, "item-1", "completed", "Processed item-1"),
        (1, "item-2", "completed", "Processed item-2"),
    ]


def test_cli_refuses_a_malformed_source_with_exit_2(cli_here, tmp_path: Path, execution_log: Path) -> None:  # type: ignore[no-untyped-def]
    """A malformed source exits 2 naming the line, and nothing runs."""
    source = tmp_path / "bad.jsonl"
    source.write_text('{"id": 1}\n{oops\n')
    ran = cli_here("run", "--source", str(source))
    assert ran.returncode == 2 and "line 2" in ran.stderr
    assert executed(execution_log) == []


def test_cli_runs_the_items_a_generator_yields(cli_here, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`fanout run --generator m:f --param n=3` runs what the allowed generator yields, in order."""
    monkeypatch.setenv("FANOUT_SOURCES", "flows.http_enrich:urls")
    ran = cli_here("run", "--generator", "flows.http_enrich:urls", "--param", "n=3", "--item-key", "id")
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert len(json.loads(ran.stdout)) == 3

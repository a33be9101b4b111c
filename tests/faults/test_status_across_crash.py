"""What a client polling the status URL sees when a run's flow process is SIGKILLed and the run resumes by itself."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fault_scenarios import CrashResult, Workspace, crash_at_half
from tests.support.fault_stack import FaultStack

pytestmark = pytest.mark.faults

COUNT = 60


@pytest.fixture(scope="module")
def crash(stack: FaultStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashResult]:
    """60 slow items of a never-failing processor started through the webhook; at half, the flow process
    is SIGKILLed (its `process` worker lives on, the automations resume it); a client polls the status URL
    every 0.2 s until its 200."""
    try:
        result = crash_at_half(
            stack, Workspace(tmp_path_factory.mktemp("status-crash"), storage=stack.results), kind="flow", count=COUNT
        )
    finally:
        stack.stop_workers()
        stack.cancel_unfinished()
    yield result


def test_the_client_sees_no_200_before_the_final_completed(crash: CrashResult) -> None:
    """Across the crash every answer is 202 Pending/Running; the first 200 is the Completed end."""
    assert crash.state == "COMPLETED" and crash.run_count >= 2, crash.history
    assert crash.first_final == "200 Completed", crash.statuses
    assert all(status.split(" ")[1] in ("Pending", "Running") for status in crash.statuses[:-1]), crash.statuses


def test_the_client_is_told_the_run_is_resuming(crash: CrashResult) -> None:
    """Between the crash and the resumed attempt the status says `resuming`, with a resume count."""
    assert any("(resuming 1)" in status for status in crash.statuses), (crash.statuses, crash.history)


def test_the_total_is_known_from_the_first_answer(crash: CrashResult) -> None:
    """customStatus.total is the request's item count in the first answer already."""
    assert crash.first_total == COUNT


def test_a_never_failing_processor_never_shows_a_failed_item(crash: CrashResult) -> None:
    """customStatus.failed stays 0 at every poll, during and after the crash."""
    assert crash.max_failed == 0, crash.statuses


def test_only_in_flight_items_ran_again_and_the_output_is_whole(crash: CrashResult) -> None:
    """Items finished before the kill ran once; the output is as if nothing had happened."""
    assert crash.output == [f"Processed item-{i}" for i in range(1, COUNT + 1)]
    assert not set(crash.reexecuted) & crash.finished_before_kill and len(crash.reexecuted) <= 4

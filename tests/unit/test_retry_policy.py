"""Which errors are retried, how long between attempts, and the one path every item takes."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem

from fanout.core.errors import TransientError
from fanout.core.outcome import ItemOutcome
from fanout.engine.item_path import ItemRun, carry_item
from fanout.engine.progress import ItemTally
from fanout.engine.retry_policy import RetryPolicy, is_transient


def carry(process: object, tmp_path: Path, retries: int = 3, storage: Path | None = None) -> ItemOutcome:
    """One item through `carry_item`, with no waits between attempts."""
    run = ItemRun(
        "i1",
        "fanout.engine.processor:processed",
        LocalFileSystem(basepath=str(storage or tmp_path)),
        RetryPolicy(retries=retries, delay_seconds=0, jitter_factor=0),
    )
    with run.checkpoints().journal("a") as journal, ItemTally() as tally:
        return carry_item(process, "a", run, journal, tally)  # type: ignore[arg-type]


@pytest.mark.parametrize("error", [TransientError("x"), ConnectionError("x"), TimeoutError("x")])
def test_named_transient_errors_are_retried(error: Exception) -> None:
    """TransientError and network errors count as transient."""
    assert is_transient(error)


@pytest.mark.parametrize("error", [ValueError("x"), KeyError("x"), RuntimeError("x")])
def test_bugs_are_not_retried(error: Exception) -> None:
    """Any other error is permanent."""
    assert not is_transient(error)


def test_the_policy_waits_and_jitters_through_stamina(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries wait the first delay, then double it, plus jitter up to the factor (stamina's backoff)."""
    waits: list[float] = []
    monkeypatch.setattr("time.sleep", waits.append)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise TransientError("blip")
        return "ok"

    assert RetryPolicy(retries=3, delay_seconds=1.0, jitter_factor=0.5).call(flaky) == "ok"
    assert len(waits) == 3
    assert [low <= wait <= low + 0.5 for low, wait in zip([1.0, 2.0, 4.0], waits, strict=True)] == [True] * 3


def test_transient_failure_is_retried_until_success(tmp_path: Path) -> None:
    """An item that fails transiently twice succeeds on its third attempt."""
    calls: list[str] = []

    def flaky(item: str) -> str:
        calls.append(item)
        if len(calls) < 3:
            raise TransientError("blip")
        return item.upper()

    outcome = carry(flaky, tmp_path)
    assert (outcome.value, outcome.attempts, outcome.error) == ("A", 3, None)


def test_permanent_failure_is_not_retried(tmp_path: Path) -> None:
    """A bug fails the item on its first attempt, with the error named."""

    def broken(item: str) -> str:
        raise ValueError("bad data")

    outcome = carry(broken, tmp_path)
    assert (outcome.attempts, outcome.error) == (1, "ValueError: bad data")


def test_retries_are_bounded(tmp_path: Path) -> None:
    """A transient error that never clears stops after `retries` retries."""

    def always(item: str) -> str:
        raise TransientError("down")

    outcome = carry(always, tmp_path, retries=2)
    assert (outcome.attempts, outcome.error) == (3, "TransientError: down")


def test_a_finished_item_is_checkpointed_before_it_counts(tmp_path: Path) -> None:
    """The item's record is stored by the time its outcome is returned."""
    outcome = carry(str.upper, tmp_path)
    run = ItemRun("i1", "fanout.engine.processor:processed", LocalFileSystem(basepath=str(tmp_path)), RetryPolicy())
    assert outcome.value == "A" and run.checkpoints().load(["a"]) == {"a": "A"}


def test_a_result_that_is_not_json_fails_the_item(tmp_path: Path) -> None:
    """A processor returning something JSON cannot hold fails its item with a clear reason."""
    outcome = carry(lambda item: {item}, tmp_path)
    assert outcome.error is not None and outcome.error.startswith("CheckpointNotWritten: result is not JSON")


def test_a_checkpoint_that_cannot_be_written_fails_the_item(tmp_path: Path) -> None:
    """Unwritable storage fails the item with the storage error instead of losing its checkpoint."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    outcome = carry(str.upper, tmp_path, storage=blocker)
    assert outcome.error is not None and outcome.error.startswith("CheckpointNotWritten: storage refused")

"""The output of an instance's last Completed run, in fanout's own record: what the status API shows.

The ordered output and failed items are one checkpoint-format record at `fanout/<instance_id>/run-output`,
written before the run returns, so the status of a Completed run needs neither a Prefect artifact nor
Prefect's serializers. A record that cannot be written fails the run: a run never ends Completed with
an output nobody can read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prefect.filesystems import WritableFileSystem

from fanout.core.errors import CheckpointNotWritten
from fanout.core.prefect_adapter import read_block_path, write_block_path
from fanout.storage import checkpoint_format
from fanout.storage.checkpoints import KEY_ROOT

RECORD_NAME = "run-output"


class NoRunOutput(LookupError):
    """The instance has no readable output record; the message says why."""


@dataclass(frozen=True)
class RunOutput:
    """A Completed run's ordered output and its failed items (None in a record that predates them)."""

    output: list[Any]
    failures: list[dict[str, Any]] | None = None


def run_output_path(instance_id: str) -> str:
    """Where the instance's output record lives under the storage's root."""
    return f"{KEY_ROOT}/{instance_id}/{RECORD_NAME}"


def save_run_output(
    storage: WritableFileSystem, instance_id: str, output: list[Any], failures: list[dict[str, Any]]
) -> None:
    """Record the Completed run's ordered output and failed items; `CheckpointNotWritten` when storage
    refuses it."""
    record = {"output": output, "failures": failures}
    try:
        write_block_path(storage, run_output_path(instance_id), checkpoint_format.encode(RECORD_NAME, record))
    except (OSError, TypeError, ValueError) as error:
        raise CheckpointNotWritten(f"the run's output could not be recorded: {error}") from error


def load_run_output(storage: WritableFileSystem, instance_id: str) -> RunOutput:
    """What the instance's last Completed run recorded; `NoRunOutput` when there is none or it is damaged."""
    try:
        data = read_block_path(storage, run_output_path(instance_id))
    except Exception as error:  # noqa: BLE001 - missing: each block raises its own kind
        raise NoRunOutput(f"no output recorded for instance {instance_id!r}: {error}") from None
    try:
        key, output = checkpoint_format.decode(data)
    except checkpoint_format.UnreadableRecord as error:
        raise NoRunOutput(f"the output record of instance {instance_id!r} is unreadable: {error}") from None
    recorded = _recorded(output)
    if key != RECORD_NAME or recorded is None:
        raise NoRunOutput(f"the output record of instance {instance_id!r} is not an output")
    return recorded


def _recorded(data: Any) -> RunOutput | None:
    """The record's content: `{"output": [...], "failures": [...]}`, or an earlier record's bare output list."""
    if isinstance(data, list):
        return RunOutput(data)
    if not isinstance(data, dict) or not isinstance(data.get("output"), list):
        return None
    failures = data.get("failures")
    if not isinstance(failures, list) or not all(isinstance(failure, dict) for failure in failures):
        return None
    return RunOutput(data["output"], failures)

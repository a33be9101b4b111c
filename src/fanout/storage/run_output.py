"""The output of an instance's last Completed run, in fanout's own record: what the status API shows.

A Completed run writes its ordered output (a tolerated failure's slot holds
`null`) and its failed items (item, attempts, last error: the status URL's
`failures`) to `fanout/<instance_id>/run-output` in result storage, as one
checkpoint record (src/fanout/storage/checkpoint_format.py: versioned, checksummed JSON,
key `run-output`), before the run returns. With the failures in the record,
the status of a Completed run needs no Prefect artifact, and the run publishes
its item report after its final state (src/fanout/core/wrap_up.py). A record written
before the failures were kept holds the output alone: `failures` is None. The webhook reads it back with one
read, on local folders and remote blocks alike, instead of Prefect's persisted
flow result, which it would have to deserialize with Prefect's serializers.
Nothing here unpickles, and a damaged record is reported, never returned.

A record that cannot be written fails the run (`CheckpointNotWritten`): a run
never ends Completed with an output nobody can read. Every item is checkpointed
by then, so running the instance again only writes this record.
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

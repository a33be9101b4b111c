"""The output of an instance's last Completed run, in fanout's own record: what the status API shows.

A Completed run writes its ordered output (a tolerated failure's slot holds
`null`) to `fanout/<instance_id>/run-output` in result storage, as one
checkpoint record (flows/checkpoint_format.py: versioned, checksummed JSON,
key `run-output`), before the run returns. The webhook reads it back with one
read, on local folders and remote blocks alike, instead of Prefect's persisted
flow result, which it would have to deserialize with Prefect's serializers.
Nothing here unpickles, and a damaged record is reported, never returned.

A record that cannot be written fails the run (`CheckpointNotWritten`): a run
never ends Completed with an output nobody can read. Every item is checkpointed
by then, so running the instance again only writes this record.
"""

from __future__ import annotations

from typing import Any

from prefect.filesystems import WritableFileSystem

from flows import checkpoint_format
from flows.checkpoints import KEY_ROOT
from flows.errors import CheckpointNotWritten
from flows.prefect_adapter import read_block_path, write_block_path

RECORD_NAME = "run-output"


class NoRunOutput(LookupError):
    """The instance has no readable output record; the message says why."""


def run_output_path(instance_id: str) -> str:
    """Where the instance's output record lives under the storage's root."""
    return f"{KEY_ROOT}/{instance_id}/{RECORD_NAME}"


def save_run_output(storage: WritableFileSystem, instance_id: str, output: list[Any]) -> None:
    """Record the Completed run's ordered output; `CheckpointNotWritten` when storage refuses it."""
    try:
        write_block_path(storage, run_output_path(instance_id), checkpoint_format.encode(RECORD_NAME, output))
    except (OSError, TypeError, ValueError) as error:
        raise CheckpointNotWritten(f"the run's output could not be recorded: {error}") from error


def load_run_output(storage: WritableFileSystem, instance_id: str) -> list[Any]:
    """The ordered output the instance's last Completed run recorded; `NoRunOutput` when there is none
    or it is damaged."""
    try:
        data = read_block_path(storage, run_output_path(instance_id))
    except Exception as error:  # noqa: BLE001 - missing: each block raises its own kind
        raise NoRunOutput(f"no output recorded for instance {instance_id!r}: {error}") from None
    try:
        key, output = checkpoint_format.decode(data)
    except checkpoint_format.UnreadableRecord as error:
        raise NoRunOutput(f"the output record of instance {instance_id!r} is unreadable: {error}") from None
    if key != RECORD_NAME or not isinstance(output, list):
        raise NoRunOutput(f"the output record of instance {instance_id!r} is not an output")
    return output

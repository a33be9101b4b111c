"""Errors fanout raises or recognises.

FanoutError
├── InvalidRequest        bad input; nothing was started
│   └── ProcessorNotFound the configured processor cannot be imported
├── TransientError        raised by a processor: retry this item
│   └── ItemProcessDied   the worker process running the item died (FANOUT_TASK_RUNNER=process)
├── CheckpointNotWritten  an item finished but its checkpoint could not be stored: the item fails
└── ItemsFailed           items failed for good; names each one
"""

from __future__ import annotations

from collections.abc import Sequence


class FanoutError(Exception):
    """Base of every error fanout defines."""


class InvalidRequest(FanoutError, ValueError):
    """The request cannot be run as given; no item was started."""


class ProcessorNotFound(InvalidRequest):
    """The processor named by `FANOUT_PROCESSOR` cannot be imported or called."""


class TransientError(FanoutError):
    """A processor raises this (or a subclass) for a failure worth retrying."""


class ItemProcessDied(TransientError):
    """The worker process running an item died before the item finished; retried like any transient error."""


class CheckpointNotWritten(FanoutError):
    """An item's result could not be checkpointed (storage error, or a result JSON cannot hold).

    The item fails with it rather than finish unrecorded: a run never ends well
    without its checkpoints.
    """


class ItemsFailed(FanoutError):
    """Some items failed permanently after their siblings finished."""

    def __init__(self, failures: Sequence[tuple[str, str]] | str, total: int = 0) -> None:
        """`failures` may also be the message alone: Prefect's JSON result serializer stores an
        exception as its message and rebuilds it with `ItemsFailed(message)` when a client reads
        a Failed run's result (`state.result()`, `run_deployment`)."""
        if isinstance(failures, str):
            self.failures: list[tuple[str, str]] = []
            self.total = total
            super().__init__(failures)
            return
        self.failures = list(failures)
        self.total = total
        listed = "; ".join(f"{item}: {error}" for item, error in self.failures)
        super().__init__(f"{len(self.failures)} of {total} items failed: {listed}")

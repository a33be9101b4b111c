"""A private PostgreSQL cluster for tests, in a temporary folder the `postgres` user can reach."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deployments.postgres import LocalPostgres, running_postgres


@contextmanager
def private_postgres() -> Iterator[LocalPostgres]:
    """A started cluster in a fresh /tmp folder (pytest's own temp folders are closed to other users);
    stopped and removed on exit, whatever happened inside."""
    folder = Path(tempfile.mkdtemp(prefix="fanout-pg-"))
    try:
        with running_postgres(folder) as cluster:
            yield cluster
    finally:
        shutil.rmtree(folder, ignore_errors=True)

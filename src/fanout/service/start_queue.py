"""The webhook's durable queue of accepted starts: a 202 is a row here, not a wait on Prefect.

A start that names no instance cannot conflict with anything, so the webhook writes it to a SQLite
file of its own (a committed row survives a crash) and answers at once;
src/fanout/service/submitter.py creates the flow runs from the rows. A row is `queued`, `submitted`,
`failed` or `cancelled`; past `limit` queued rows a start is refused (`StartRefused`, 429).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fanout.service.webhook_errors import StartRefused

StartState = Literal["queued", "submitted", "failed", "cancelled"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS starts (
    key TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    request TEXT NOT NULL,
    digest TEXT NOT NULL,
    state TEXT NOT NULL,
    flow_run_id TEXT,
    error TEXT,
    accepted REAL NOT NULL,
    deployment TEXT
);
CREATE INDEX IF NOT EXISTS starts_by_state ON starts (state, accepted);
CREATE INDEX IF NOT EXISTS starts_by_instance ON starts (instance_id);
"""
ADD_DEPLOYMENT = "ALTER TABLE starts ADD COLUMN deployment TEXT"  # a queue file written before the column


@dataclass(frozen=True)
class QueuedStart:
    """One accepted start: the run to create (`request` is the flow's parameter, as JSON)."""

    key: str
    instance_id: str
    request: str
    digest: str
    state: StartState
    flow_run_id: str | None
    error: str | None
    accepted: float
    deployment: str | None = None


class StartQueue:
    """Accepted starts in one SQLite file (`:memory:` for tests); every call is one short transaction."""

    def __init__(self, path: Path | str, limit: int, retry_after: int = 1) -> None:
        if isinstance(path, Path):
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a commit survives a process crash
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(starts)")}
        if "deployment" not in columns:
            self._db.execute(ADD_DEPLOYMENT)
        self.limit = limit
        self.retry_after = retry_after

    def accept(
        self, key: str, instance_id: str, request: str, digest: str, deployment: str | None = None
    ) -> QueuedStart:
        """The start already accepted under `key`, else a new queued row; `StartRefused` when the queue is full."""
        with self._transaction():
            existing = self._one("SELECT * FROM starts WHERE key = ?", key)
            if existing is not None:
                return existing
            (queued,) = self._db.execute("SELECT count(*) FROM starts WHERE state = 'queued'").fetchone()
            if queued >= self.limit:
                raise StartRefused(
                    f"{queued} starts are waiting for Prefect (FANOUT_WEBHOOK_MAX_QUEUED_STARTS); nothing was started",
                    retry_after=self.retry_after,
                )
            start = QueuedStart(key, instance_id, request, digest, "queued", None, None, time.time(), deployment)
            self._db.execute(
                "INSERT INTO starts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (key, instance_id, request, digest, start.state, None, None, start.accepted, deployment),
            )
            return start

    def queued(self, limit: int) -> list[QueuedStart]:
        """The oldest queued starts."""
        return self._all("SELECT * FROM starts WHERE state = 'queued' ORDER BY accepted LIMIT ?", limit)

    def queued_count(self) -> int:
        (count,) = self._db.execute("SELECT count(*) FROM starts WHERE state = 'queued'").fetchone()
        return int(count)

    def of_instance(self, instance_id: str) -> QueuedStart | None:
        """The instance's newest accepted start, whatever its state."""
        return self._one("SELECT * FROM starts WHERE instance_id = ? ORDER BY accepted DESC LIMIT 1", instance_id)

    def by_key(self, key: str) -> QueuedStart | None:
        return self._one("SELECT * FROM starts WHERE key = ?", key)

    def finish(self, key: str, state: StartState, flow_run_id: str | None = None, error: str | None = None) -> bool:
        """Move a queued start on to `state`; False when it was no longer queued (say, cancelled meanwhile)."""
        with self._transaction():
            changed = self._db.execute(
                "UPDATE starts SET state = ?, flow_run_id = ?, error = ? WHERE key = ? AND state = 'queued'",
                (state, flow_run_id, error, key),
            ).rowcount
        return bool(changed)

    def forget_instance(self, instance_id: str) -> int:
        """Delete the instance's rows (purge); how many there were."""
        with self._transaction():
            return int(self._db.execute("DELETE FROM starts WHERE instance_id = ?", (instance_id,)).rowcount)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction, taken at once (IMMEDIATE), so a check and its write cannot interleave."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _one(self, sql: str, *args: object) -> QueuedStart | None:
        row = self._db.execute(sql, args).fetchone()
        return QueuedStart(*row) if row else None

    def _all(self, sql: str, *args: object) -> list[QueuedStart]:
        return [QueuedStart(*row) for row in self._db.execute(sql, args).fetchall()]

"""Where this process appended a stage's checkpoint records, so the results index places them without reading them back.

A journal on a local folder knows where each record it appends lands: the file's size when it was
opened, then each record's length. The stage notes that (`noting_writes`), and its results index
refresh takes the slots from the note instead of reading and checking every record again. A note is
only a shortcut: the index uses it only for the bytes of a journal it accounts for exactly, reads the
journal for anything else, and checks every record it hands out (src/fanout/storage/results_index.py).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field


@dataclass
class WrittenSpan:
    """Records one opening of a journal appended: where the first began, then each one's key and length (LF included)."""

    start: int
    keys: list[str] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    @property
    def end(self) -> int:
        """Where the journal ended after the last of these records."""
        return self.start + sum(self.lengths)


class WrittenRecords:
    """The spans a stage's journals appended in this process, by journal name (thread-safe)."""

    def __init__(self) -> None:
        self._spans: dict[str, list[WrittenSpan]] = {}
        self._lock = threading.Lock()

    def add(self, journal: str, span: WrittenSpan) -> None:
        with self._lock:
            self._spans.setdefault(journal, []).append(span)

    def placed(self, journal: str, start: int, end: int) -> list[tuple[str, int, int]] | None:
        """Each record of `journal` between bytes `start` and `end` as (key, offset, length without the LF),
        when the spans noted account for exactly those bytes; otherwise None (the journal is to be read)."""
        with self._lock:
            spans = sorted(self._spans.get(journal, ()), key=lambda span: span.start)
        places: list[tuple[str, int, int]] = []
        at = start
        for span in spans:
            if span.start != at:
                return None
            for key, length in zip(span.keys, span.lengths, strict=True):
                places.append((key, at, length - 1))
                at += length
        return places if at == end else None


_noted: ContextVar[WrittenRecords | None] = ContextVar("fanout_written_records", default=None)


@contextmanager
def noting_writes() -> Iterator[WrittenRecords]:
    """Note the records journals opened in this context (and in task runs submitted from it, which
    Prefect's thread runner runs in a copy of it) append on a local folder."""
    records = WrittenRecords()
    token = _noted.set(records)
    try:
        yield records
    finally:
        _noted.reset(token)


def current_note() -> WrittenRecords | None:
    """The note a journal opened now adds its span to, or None (no stage notes, as on a Dask worker)."""
    return _noted.get()

"""Item processors for tests, steered by environment variables so subprocesses obey them too.

FANOUT_TEST_LOG_DIR    each execution creates a file there (executions are counted by files)
FANOUT_TEST_FAIL       comma-separated items that always fail (ValueError)
FANOUT_TEST_FLAKY      comma-separated items whose first attempt raises TransientError
FANOUT_TEST_CRASH_AT   the item at which the process dies with os._exit (once: a marker file)
FANOUT_TEST_SLEEP_MAX  sleep a random time up to this many seconds
FANOUT_TEST_SLEEP      sleep exactly this many seconds (a slow item)
FANOUT_TEST_CRASH_ALWAYS  the item at which the process dies every time (a poison run)
FANOUT_TEST_KILL_FLOW_AT  the item at which the processor SIGKILLs its parent process: the flow, when items run
                       in worker processes (once: a marker file)
FANOUT_TEST_FLAKY_PERCENT  this percentage of items fail their first attempt (see `is_flaky`)
FANOUT_TEST_HOLD_UNTIL  each item waits (after its execution file is written) until this file exists, so a
                       test decides when a run may finish, however slow the machine
Each execution file holds `<idempotency key> <attempt>` when the item context is available.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import signal
import threading
import time
import uuid
from pathlib import Path

from fanout.core.errors import TransientError
from fanout.localstack.polling import wait_for

HOLD_SECONDS = 300.0
"""How long an item held by FANOUT_TEST_HOLD_UNTIL waits before it fails (a test that never released it)."""


def _listed(name: str) -> set[str]:
    return {part for part in os.environ.get(name, "").split(",") if part}


def _log_dir() -> Path | None:
    folder = os.environ.get("FANOUT_TEST_LOG_DIR")
    return Path(folder) if folder else None


def executed(folder: Path) -> list[str]:
    """The items started, one entry per execution, from a FANOUT_TEST_LOG_DIR folder."""
    return sorted(path.name.split(".")[0] for path in folder.iterdir() if path.name not in {"crashed", "killed"})


def executions(item: str) -> int:
    """How many times `item` has started, counted from the log folder."""
    folder = _log_dir()
    assert folder is not None
    return len(list(folder.glob(f"{item}.*")))


def _context_line() -> str:
    from fanout.core.item_context import current_item

    try:
        context = current_item()
    except LookupError:
        return ""
    return f"{context.idempotency_key} {context.attempt}"


def is_flaky(item: str, percent: float | None = None) -> bool:
    """True for the items FANOUT_TEST_FLAKY names or FANOUT_TEST_FLAKY_PERCENT (or `percent`) picks.

    Of item-1 .. item-N exactly `percent`% are picked, evenly spread; other ids by a hash.
    """
    if percent is None:
        percent = float(os.environ.get("FANOUT_TEST_FLAKY_PERCENT", "0") or 0)
    if item in _listed("FANOUT_TEST_FLAKY"):
        return True
    number = item.rpartition("-")[2]
    if number.isdigit():
        index = int(number)
        return int(index * percent // 100) != int((index - 1) * percent // 100)
    return int(hashlib.sha256(item.encode()).hexdigest()[:8], 16) % 10_000 < percent * 100


def scripted(item: str) -> str:
    """Behaves as the FANOUT_TEST_* variables say, then returns the seed's result."""
    folder = _log_dir()
    if folder is not None:
        (folder / f"{item}.{uuid.uuid4().hex}").write_text(_context_line())
    crash_at = os.environ.get("FANOUT_TEST_CRASH_AT")
    if crash_at == item and folder is not None and not (folder / "crashed").exists():
        (folder / "crashed").touch()
        os._exit(17)
    if os.environ.get("FANOUT_TEST_CRASH_ALWAYS") == item:
        os._exit(17)
    if os.environ.get("FANOUT_TEST_KILL_FLOW_AT") == item and folder is not None and not (folder / "killed").exists():
        (folder / "killed").touch()
        os.kill(os.getppid(), signal.SIGKILL)
    if hold := os.environ.get("FANOUT_TEST_HOLD_UNTIL"):
        wait_for(Path(hold).exists, HOLD_SECONDS, f"{hold} to exist", interval=0.05)
    sleep_max = float(os.environ.get("FANOUT_TEST_SLEEP_MAX", "0") or 0)
    if sleep_max:
        time.sleep(random.uniform(0, sleep_max))
    time.sleep(float(os.environ.get("FANOUT_TEST_SLEEP", "0") or 0))
    if item in _listed("FANOUT_TEST_FAIL"):
        raise ValueError(f"{item} is broken")
    if is_flaky(item) and folder is not None and executions(item) == 1:
        raise TransientError(f"{item} hit a blip")
    return f"Processed {item}"


class InFlightRecorder:
    """Counts items running at once, to prove a concurrency cap rather than trust it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0
        self.started = 0

    def reset(self) -> None:
        with self._lock:
            self.current = self.peak = self.started = 0

    def __enter__(self) -> None:
        with self._lock:
            self.current += 1
            self.started += 1
            self.peak = max(self.peak, self.current)

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.current -= 1


RECORDER = InFlightRecorder()


def recorded(item: str) -> str:
    """Records how many items are in flight while sleeping briefly."""
    with RECORDER:
        time.sleep(0.02)
    return f"Processed {item}"


def keyed(item: str) -> str:
    """Returns the idempotency key fanout gives this item, and records it with the attempt."""
    from fanout.core.item_context import current_item

    context = current_item()
    folder = _log_dir()
    if folder is not None:
        (folder / f"{item}.{uuid.uuid4().hex}").write_text(f"{context.idempotency_key} {context.attempt}")
    if item in _listed("FANOUT_TEST_FLAKY") and folder is not None and executions(item) == 1:
        raise TransientError(f"{item} hit a blip")
    return context.idempotency_key


def chatty(item: str) -> str:
    """Logs through fanout's item logger, then behaves like `scripted` (flaky/failing items)."""
    from fanout.engine.item_logging import item_logger

    item_logger().info("working on it")
    return scripted(item)


def fleet_recorded(item: str) -> str:
    """Records items in flight across processes in FANOUT_TEST_RECORDER, holding each FANOUT_TEST_SLEEP s.

    Every start and end appends `<unix time> <items in flight>` under an exclusive
    file lock, so workers on several processes (or hosts sharing the folder)
    write one timeline a test can read the cap from.
    """
    timeline = Path(os.environ["FANOUT_TEST_RECORDER"])
    _shift_in_flight(timeline, +1)
    try:
        time.sleep(float(os.environ.get("FANOUT_TEST_SLEEP", "0.1")))
    finally:
        _shift_in_flight(timeline, -1)
    return f"Processed {item}"


def _shift_in_flight(timeline: Path, delta: int) -> None:
    with timeline.open("a+") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.seek(0)
        lines = log.read().splitlines()
        current = int(lines[-1].split()[1]) if lines else 0
        log.write(f"{time.time():.6f} {current + delta}\n")


def in_flight_timeline(timeline: Path) -> list[tuple[float, int]]:
    """The `(time, items in flight)` pairs `fleet_recorded` wrote."""
    if not timeline.exists():
        return []
    return [(float(at), int(count)) for at, count in (line.split() for line in timeline.read_text().splitlines())]

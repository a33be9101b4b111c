"""Looking at processes from /proc: which ones live below a process or carry a mark in their environment,
and whether one is still alive."""

from __future__ import annotations

from pathlib import Path

from fanout.localstack.processes import alive as alive  # re-exported: the tests import it from here


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state, parent, group, session, ...)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants(pid: int) -> set[int]:
    """Every living process below `pid` (children, their children, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat_fields(entry.name)[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return {child for child in found if alive(child)}


def marked_processes(marker: str) -> set[int]:
    """Living processes whose environment carries `marker` (what a process starts inherits it)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "environ").read_bytes() and alive(int(entry.name)):
                    found.add(int(entry.name))
            except OSError:
                continue
    return found


MULTIPROCESSING_HELPERS = (b"multiprocessing.resource_tracker", b"multiprocessing.forkserver")


def own_multiprocessing_helpers(pid: int) -> set[int]:
    """The resource tracker and forkserver that `multiprocessing` started for `pid` itself: they exit when it
    does, so they are not something it left running."""
    found = set()
    for child in descendants(pid):
        try:
            parent = int(_stat_fields(child)[1])
            command = Path(f"/proc/{child}/cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and any(helper in command for helper in MULTIPROCESSING_HELPERS):
            found.add(child)
    return found

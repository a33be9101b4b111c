"""Which tests share a test process under pytest-xdist, and the scheduler that hands them out.

The tests of a module-scoped fixture (one `fanout up`, one crash) must run in one test process, in their
module's order: another process would set the fixture up again. pytest-xdist's `xdist_group` marker
cannot say so on pytest 9.2 (it renames test ids, which pytest no longer lets it do), so each test process
writes the modules to keep together into the session's folder as it collects, and the controller's
scheduler reads them before it hands out the first test. Every other test is handed out on its own, in
the order collection left them (tests/conftest.py puts the longest tiers first).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pytest
from xdist.scheduler import LoadScopeScheduling

GROUPS_PREFIX = "grouped-modules-"


def record_grouped_modules(folder: Path, worker: str, modules: Iterable[str]) -> None:
    """Write this test process's list of modules to keep together (whole, under a temporary name first)."""
    partial = folder / f".{GROUPS_PREFIX}{worker}"
    partial.write_text("".join(f"{module}\n" for module in sorted(set(modules))))
    os.replace(partial, folder / f"{GROUPS_PREFIX}{worker}")


def grouped_modules(folder: Path) -> set[str]:
    """Every module some test process asked to keep together."""
    return {line for path in folder.glob(f"{GROUPS_PREFIX}*") for line in path.read_text().splitlines() if line}


class ModuleGroupScheduling(LoadScopeScheduling):
    """pytest-xdist's scope scheduling with one scope per grouped module and one per other test."""

    def __init__(self, config: pytest.Config, log: object, folder: Path) -> None:
        super().__init__(config, log)  # type: ignore[arg-type]
        self.folder = folder
        self.grouped: set[str] = set()

    def schedule(self) -> None:
        # Every test process has collected (and so written its list) before the controller schedules.
        self.grouped = grouped_modules(self.folder)
        super().schedule()

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return module if module in self.grouped else nodeid

"""Every test starts from a clean configuration (no FANOUT_* overrides, its own result folder) and
carries the marker of its folder (tests/unit -> `unit`, ...), so `pytest -m unit` selects a tier."""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
# The test folders, each its own marker (declared with a description in pyproject.toml).
FOLDER_MARKERS = ("unit", "integration", "e2e", "faults", "ui", "postgres")
LOG_TAIL_LINES = 60


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with the folder it lives in."""
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(TESTS) and (folder := path.relative_to(TESTS).parts[0]) in FOLDER_MARKERS:
            item.add_marker(folder)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test on a stack of real processes reports the end of their logs (server, workers, webhook):
    in CI they are the only record of what the processes saw."""
    report: pytest.TestReport = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    home = getattr(stack, "home", None)
    if report.failed and isinstance(home, Path):
        for log in sorted((home / "logs").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"{log.name} (last {len(lines)} lines)", "\n".join(lines)))
    return report


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Clear FANOUT_* variables and point result storage at this test's own folder."""
    for name in list(os.environ):
        if name.startswith("FANOUT_"):
            monkeypatch.delenv(name)
    results = tmp_path / "results"
    monkeypatch.setenv("FANOUT_RESULT_STORAGE", str(results))
    monkeypatch.setenv("FANOUT_RETRY_DELAY_SECONDS", "0")
    yield results


@pytest.fixture
def execution_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A folder where the scripted processor records each execution, and select that processor."""
    folder = tmp_path / "executions"
    folder.mkdir()
    monkeypatch.setenv("FANOUT_TEST_LOG_DIR", str(folder))
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.processors:scripted")
    return folder

"""Every test starts from a clean configuration: no FANOUT_* overrides, its own result folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


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

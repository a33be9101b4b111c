"""Where things are: the checkout (test subprocesses run there, and flow runs import `tests.support` from
it) and the browser the UI tier drives."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS = REPO_ROOT / "tests"
CHROMIUM = Path("/usr/bin/chromium")
"""Debian's chromium, which the UI tier drives (never a downloaded browser)."""
SCREENSHOTS = Path(os.environ.get("FANOUT_TEST_ARTIFACTS", REPO_ROOT / "test-artifacts")) / "ui"
"""Where the UI tier leaves its screenshots."""
SESSION_FOLDER_ENV = "PYTEST_FANOUT_SESSION_FOLDER"
"""Names the test session's scratch folder (made by tests/conftest.py; xdist's test processes inherit the
variable): the migrated database template, the modules each test process keeps together."""

"""Where the checkout is: test subprocesses run there, and flow runs import `tests.support` from it."""

from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTS = REPO_ROOT / "tests"

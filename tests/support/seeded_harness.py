"""A pytest plugin for a pytest the suite starts in a process of its own (the testing-your-flow page's):
its `prefect_test_harness` starts from the session's migrated database (tests/support/database.py), as the
integration tier's harness does, instead of migrating a fresh one. Load it with `-p tests.support.seeded_harness`."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from tests.support.database import seeded_harness_folders


def pytest_configure(config: pytest.Config) -> None:
    """Seed every harness folder made in this session; stop seeding when it ends."""
    seeding = ExitStack()
    seeding.enter_context(seeded_harness_folders())
    config.add_cleanup(seeding.close)

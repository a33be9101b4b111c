"""One `fanout up` per home: a second one is refused, naming the first."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fanout.localstack.up import HomeBusy, home_lock


def test_a_second_up_on_a_home_is_refused_naming_the_first(tmp_path: Path) -> None:
    """While one holds the home, taking it again raises HomeBusy with the holder's pid."""
    busy = f"already runs on {tmp_path} \\(pid {os.getpid()}\\)"
    with home_lock(tmp_path), pytest.raises(HomeBusy, match=busy), home_lock(tmp_path):
        pass


def test_the_home_is_free_again_once_its_up_has_ended(tmp_path: Path) -> None:
    """After the holder lets go, the next `fanout up` takes the home."""
    with home_lock(tmp_path):
        pass
    with home_lock(tmp_path):
        assert (tmp_path / "up.lock").read_text() == str(os.getpid())

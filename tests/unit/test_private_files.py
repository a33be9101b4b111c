"""What fanout writes in its home and result storage is owner-only from the first write, whatever the umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem

from fanout.core.private_files import make_folders
from fanout.storage.checkpoints import CheckpointStore
from fanout.storage.instance_results import InstanceResults, record_failures, record_plan
from fanout.storage.run_output import save_run_output

PROCESSOR = "tests.support.processors:scripted"


@pytest.fixture(autouse=True)
def permissive_umask() -> Iterator[None]:
    """The usual umask, 022, which leaves new files readable by everyone."""
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def modes_under(root: Path) -> dict[str, int]:
    """Every folder and file under `root` (itself included), by path relative to it, with its mode."""
    found = {".": mode(root)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = mode(path)
    return found


def test_storage_folders_and_records_are_owner_only(tmp_path: Path) -> None:
    """Plan, checkpoints, failures, results index and run output, and each folder made for them: 0700 and 0600."""
    home = tmp_path / ".fanout"
    storage = str(home / "storage")
    record_plan(storage, "inst", PROCESSOR, ["a", "b"])
    with CheckpointStore(LocalFileSystem(basepath=storage), "inst", PROCESSOR).journal("batch-1") as journal:
        journal.append("a", 1)
    record_failures(storage, "inst", {"b": "ValueError: no"})
    InstanceResults(storage, "inst").page(0, 2)
    save_run_output(LocalFileSystem(basepath=storage), "inst", [1, None], [])
    found = modes_under(home)
    assert any("journal-" in name for name in found) and any("results-index/slots" in name for name in found)
    assert {name: mode for name, mode in found.items() if mode not in (0o700, 0o600)} == {}
    assert all(found[name] == 0o700 for name in found if (home / name).is_dir())


def test_existing_folders_keep_their_modes(tmp_path: Path) -> None:
    """Only folders fanout creates are made owner-only: a user's existing folder is left as it is."""
    tmp_path.chmod(0o755)
    make_folders(tmp_path / "a" / "b")
    assert (mode(tmp_path), mode(tmp_path / "a"), mode(tmp_path / "a" / "b")) == (0o755, 0o700, 0o700)

"""Checkpoints that are safe to trust: damaged, planted, older or unwritable records never yield a wrong value."""

from __future__ import annotations

import base64
import json
import os
import pickle
from pathlib import Path

import pytest
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultStore

from fanout.storage.checkpoints import instance_prefix, item_digest
from tests.support.processors import executed

# Part of the fault suite (`pytest -m faults`) as well: they damage, plant and lock real checkpoint files.
pytestmark = pytest.mark.faults

PROCESSOR = "tests.support.processors:scripted"
SEED = [f"Processed item-{i}" for i in range(1, 21)]


def instance_folder(results: Path, instance: str) -> Path:
    return results / instance_prefix(instance, PROCESSOR)


def clear(execution_log: Path) -> None:
    for path in execution_log.iterdir():
        path.unlink()


class Planted:
    """Unpickling this runs a shell command that leaves a marker file, as a planted record would."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


def pickled_record(value: object, storage_key: str) -> bytes:
    """A Prefect result record with a pickle payload: what fanout wrote before its own format (version 0)."""
    payload = base64.encodebytes(pickle.dumps(value)).decode()
    metadata = {
        "storage_key": storage_key,
        "expiration": None,
        "serializer": {"type": "pickle", "picklelib": "pickle"},
        "prefect_version": "3.9.1",
        "storage_block_id": None,
    }
    return json.dumps({"metadata": metadata, "result": payload}).encode()


def test_flipped_bytes_never_return_a_wrong_value(cli, cli_here, execution_log: Path, clean_settings: Path) -> None:
    """One byte changed in every record line: the rerun re-executes those items and prints the right output."""
    assert cli_here("run", "--count", "20", "--instance-id", "flipped").returncode == 0
    clear(execution_log)
    folder = instance_folder(clean_settings, "flipped")
    for path in folder.iterdir():
        damaged = [line.replace(b"Processed item", b"Processed i|em") for line in path.read_bytes().split(b"\n")]
        path.write_bytes(b"\n".join(damaged))
    resumed = cli("run", "--count", "20", "--instance-id", "flipped")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == SEED
    assert executed(execution_log) == sorted(f"item-{i}" for i in range(1, 21))
    assert "damaged: checksum does not match" in resumed.stderr


def test_one_damaged_line_reruns_only_its_item(cli_here, execution_log: Path, clean_settings: Path) -> None:
    """Damage to one item's line costs that item alone; the others come from their checkpoints."""
    assert cli_here("run", "--count", "150", "--instance-id", "one-flip").returncode == 0
    clear(execution_log)
    folder = instance_folder(clean_settings, "one-flip")
    for path in folder.iterdir():
        if path.name.startswith("output-"):
            path.unlink()
        else:
            path.write_bytes(path.read_bytes().replace(b'"Processed item-42"', b'"Processed item-43"'))
    resumed = cli_here("run", "--count", "150", "--instance-id", "one-flip")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout) == [f"Processed item-{i}" for i in range(1, 151)]
    assert executed(execution_log) == ["item-42"]


def test_unwritable_storage_fails_the_run(
    cli, monkeypatch: pytest.MonkeyPatch, execution_log: Path, tmp_path: Path
) -> None:
    """With checkpoints impossible to store, the run exits non-zero naming the storage error, printing no output."""
    blocker = tmp_path / "storage-is-a-file"
    blocker.write_text("nothing can be created under a file")
    monkeypatch.setenv("FANOUT_RESULT_STORAGE", str(blocker))
    done = cli("run", "--count", "5", "--instance-id", "unwritable")
    assert done.returncode == 1 and done.stdout == ""
    assert "CheckpointNotWritten: storage refused" in done.stderr
    assert "storage-is-a-fil" in done.stderr  # the error names the path that cannot hold the records


def test_a_planted_pickle_is_never_executed(cli, execution_log: Path, clean_settings: Path, tmp_path: Path) -> None:
    """Records planted as pickles, as a journal and at an item's key, are not unpickled: the items just run."""
    marker = tmp_path / "pwned"
    folder = instance_folder(clean_settings, "planted")
    folder.mkdir(parents=True)
    record = pickled_record(Planted(marker), str(folder / item_digest("item-1")))
    (folder / item_digest("item-1")).write_bytes(record)
    (folder / "journal-planted").write_bytes(record + b"\n")
    done = cli("run", "--count", "3", "--instance-id", "planted")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == SEED[:3]
    assert not marker.exists()
    assert executed(execution_log) == ["item-1", "item-2", "item-3"]
    assert "older format (version 0" in done.stderr


def test_records_of_an_older_format_rerun_their_items(cli, execution_log: Path, clean_settings: Path) -> None:
    """Checkpoints Prefect's ResultStore wrote (fanout's format before version 1) are reported and re-run."""
    folder = instance_folder(clean_settings, "older")
    store = ResultStore(result_storage=LocalFileSystem(basepath=str(clean_settings)))
    for item in ("item-1", "item-2"):
        store.write(f"stale {item}", key=f"{instance_prefix('older', PROCESSOR)}/{item_digest(item)}")
    assert len(list(folder.iterdir())) == 2
    done = cli("run", "--count", "3", "--instance-id", "older")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == SEED[:3]
    assert executed(execution_log) == ["item-1", "item-2", "item-3"]
    assert "2 checkpoint record(s) skipped, older format" in done.stderr

"""The backup example (flows/backup.py): Durable Functions' E1_BackupSiteContent on durable_map."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.backup import FLOW_NAME, backup_site_content

FILES = {"index.html": b"<h1>hello</h1>", "css/site.css": b"body {}", "img/a/logo.svg": b"<svg/>" * 100}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site of three files in nested folders."""
    root = tmp_path / "site"
    for name, content in FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def test_every_file_is_copied_and_the_total_bytes_returned(site: Path, tmp_path: Path) -> None:
    """Each file lands at its relative path under the backup folder; the flow returns the sum of their sizes."""
    backup = tmp_path / "backup"
    total = backup_site_content(str(site), backup_url=str(backup))
    assert total == sum(len(content) for content in FILES.values())
    assert {name: (backup / name).read_bytes() for name in FILES} == FILES


def test_the_backup_location_comes_from_the_environment(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the root directory as the only parameter, files go to FANOUT_BACKUP_URL."""
    monkeypatch.setenv("FANOUT_BACKUP_URL", str(tmp_path / "elsewhere"))
    backup_site_content(str(site))
    assert (tmp_path / "elsewhere" / "css" / "site.css").read_bytes() == FILES["css/site.css"]


def test_the_flow_is_named_as_the_durable_functions_orchestrator() -> None:
    """The flow's name is the sample's orchestrator name, and it needs only the root directory."""
    assert backup_site_content.name == FLOW_NAME == "E1_BackupSiteContent"
    assert backup_site_content.parameters.required == ["root_directory"]

"""Durable Functions' "backup site content" sample (`E1_BackupSiteContent`), written on `durable_map`.

The listing is a plain function, the copy is `durable_map`'s function and the sum of bytes copied happens
in the flow, so a rerun of the same instance copies only the files not yet copied. Files go through
fsspec: the root and the backup location (`backup_url`, else `FANOUT_BACKUP_URL`, else `.fanout/backup`)
may be a folder or any URL fsspec knows.
"""

from __future__ import annotations

import functools
import posixpath
import shutil

import fsspec
from prefect import flow
from pydantic_settings import BaseSettings, SettingsConfigDict

from fanout import durable_map

FLOW_NAME = "E1_BackupSiteContent"


class BackupSettings(BaseSettings):
    """Where backups go when the run does not say: `FANOUT_BACKUP_URL`."""

    model_config = SettingsConfigDict(env_prefix="FANOUT_BACKUP_", env_file=".env", extra="ignore")

    url: str = ".fanout/backup"


def list_files(root_directory: str) -> list[str]:
    """Every file under `root_directory`, as fsspec paths, sorted (`E1_GetFileList`)."""
    filesystem, root = fsspec.core.url_to_fs(root_directory)
    return sorted(filesystem.find(root))


def copy_file(path: str, root_directory: str, backup_url: str) -> int:
    """Copy one file to the same relative path under `backup_url`; the bytes copied (`E1_CopyFileToBlob`)."""
    source, root = fsspec.core.url_to_fs(root_directory)
    target, base = fsspec.core.url_to_fs(backup_url)
    relative = posixpath.relpath(path, root)
    destination = posixpath.join(base, relative)
    target.makedirs(posixpath.dirname(destination), exist_ok=True)
    with source.open(path, "rb") as reading, target.open(destination, "wb") as writing:
        shutil.copyfileobj(reading, writing)
    return int(source.size(path))


@flow(name=FLOW_NAME)
def backup_site_content(root_directory: str, backup_url: str | None = None) -> int:
    """Back up every file under `root_directory`, once per instance; the total bytes copied.

    Files are keyed by their path, so a rerun of the instance (its flow run retried)
    skips the files already copied even if new ones appeared in between.
    """
    files = list_files(root_directory)
    copy = functools.partial(copy_file, root_directory=root_directory, backup_url=backup_url or BackupSettings().url)
    sizes = durable_map(copy, files, key=str)
    return sum(sizes)

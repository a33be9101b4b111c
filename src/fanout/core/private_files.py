"""Owner-only folders and files for what fanout writes in its own home and result storage.

Results, plans and checkpoints are the user's data; another account on the
machine has no business reading them. The modes are given where each folder
and file is created (0700, 0600), whichever command creates it first, rather
than by changing the process's umask: fanout runs inside other people's
processes (`fanout run`, a worker's flow), whose umask is theirs.
Existing folders and files keep their modes; `fanout up` tightens an older
home (src/fanout/localstack/permissions.py).
"""

from __future__ import annotations

import os
from pathlib import Path

FOLDER_MODE = 0o700
FILE_MODE = 0o600


def make_folders(path: str | os.PathLike[str]) -> None:
    """Create `path` and every missing folder above it, each owner-only; existing ones are left as they are."""
    missing: list[Path] = []
    current = Path(path)
    while not current.is_dir():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=FOLDER_MODE)
        except FileExistsError:
            if not folder.is_dir():  # a file where a folder belongs: say so, as mkdir -p does
                raise


def open_private(path: str | os.PathLike[str], flags: int) -> int:
    """`os.open(path, flags)`, a file it creates being owner-only."""
    return os.open(path, flags | getattr(os, "O_CLOEXEC", 0), FILE_MODE)


def write_private(path: str | os.PathLike[str], content: bytes) -> None:
    """Write `content` as the whole of the file at `path` (owner-only if new), creating its folders."""
    make_folders(Path(path).parent)
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb") as target:
        target.write(content)

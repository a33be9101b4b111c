"""Owner-only folders and files for what fanout writes in its own home and result storage.

Results and checkpoints are the user's data. Modes are set where each file is created rather than
through the umask, because fanout runs inside other people's processes, whose umask is theirs.
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

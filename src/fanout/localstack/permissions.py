"""Owner-only state for the local stack: its home (`.fanout/`) is 0700 and every file in it 0600.

The home holds Prefect's database, the logs, the webhook token, the Prefect auth string and result
storage: anyone else who could read them could read results, start runs or take over the API.
`PRIVATE_UMASK` covers what the stack's processes create later, `make_private` what exists already.
As root with a local PostgreSQL, the home is 0711 so the `postgres` user reaches its own folder.
"""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_UMASK = 0o077
FOLDER_MODE = 0o700
FILE_MODE = 0o600
PASS_THROUGH_MODE = 0o711
"""The home's mode when another user's folder inside must stay reachable (PostgreSQL as root)."""


def make_private(home: Path, pass_through: bool = False) -> None:
    """Create `home` if missing; make it and every folder in it 0700, every file 0600 (ours only)."""
    home.mkdir(parents=True, exist_ok=True)
    uid = os.geteuid()
    for folder, folders, files in os.walk(home):
        for name in folders:
            _chmod_own(Path(folder) / name, FOLDER_MODE, uid)
        for name in files:
            _chmod_own(Path(folder) / name, FILE_MODE, uid)
    home.chmod(PASS_THROUGH_MODE if pass_through else FOLDER_MODE)


def _chmod_own(path: Path, mode: int, uid: int) -> None:
    """`chmod` a file or folder we own (not a symlink: its target may be anywhere)."""
    try:
        status = path.lstat()
    except FileNotFoundError:  # gone meanwhile (a log rotated, a journal renamed)
        return
    if status.st_uid == uid and not path.is_symlink():
        path.chmod(mode)

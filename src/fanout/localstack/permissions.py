"""Owner-only state for the dev stack: its home (`.fanout/`) is 0700 and every file in it 0600.

The home holds Prefect's database, the logs, the webhook token, the Prefect
auth string and, through the worker's `PREFECT_HOME`, result storage with every
checkpoint: anyone else on the machine who could read them could read results,
start runs or take over the API. Two parts keep it private:

- `PRIVATE_UMASK`, set for every process the stack starts (src/fanout/localstack/processes.py)
  and for `fanout up` itself, so whatever they create later is owner-only;
- `make_private(home)`, for what exists already (a home made before, or by
  a tool with a looser umask).

Files another user owns are left alone: as root, `fanout up --database postgres`
hands the PostgreSQL cluster's folder to the `postgres` user, who must be able
to reach it, so then the home is 0711 (others may pass through to that folder,
but not list or read anything) instead of 0700.
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

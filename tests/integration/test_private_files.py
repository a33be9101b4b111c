"""`fanout run` in a fresh folder leaves fanout's home and every record it wrote owner-only, with no `fanout up`."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from fanout.storage.run_output import RECORD_NAME
from tests.conftest import REPO_ROOT


def test_fanout_run_writes_an_owner_only_home(prefect_api: str, tmp_path: Path) -> None:
    """After `fanout run` under umask 022: `.fanout` and its folders 0700, the plan, journals and outputs 0600."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("FANOUT_")}
    env.update({"PREFECT_API_URL": prefect_api, "PYTHONPATH": str(REPO_ROOT)})
    done = subprocess.run(
        [sys.executable, "-m", "fanout.cli.cli", "run", "--count", "3", "--instance-id", "private-home"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=180,
        umask=0o022,
    )
    assert done.returncode == 0, done.stderr
    home = tmp_path / ".fanout"
    written = [home, *home.rglob("*")]
    names = {path.name for path in written}
    assert {"storage", "plan.json", RECORD_NAME} <= names and any(name.startswith("output-") for name in names), names
    loose = {str(path.relative_to(tmp_path)): oct(stat.S_IMODE(path.stat().st_mode)) for path in written}
    assert {
        name: mode for name, mode in loose.items() if mode != ("0o700" if (tmp_path / name).is_dir() else "0o600")
    } == {}

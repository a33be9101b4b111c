"""A deployment's own command runs in a new interpreter with the run's environment."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from fanout.worker.warm_processes import CommandProcess


def test_a_command_process_runs_in_a_new_interpreter_with_the_run_environment(tmp_path: Path) -> None:
    """The deployment's command runs in the run's folder with its variables; its exit status is reported."""
    script = "import os, pathlib; pathlib.Path('seen').write_text(os.environ['RUN_VARIABLE']); raise SystemExit(3)"
    process = CommandProcess(f"{sys.executable} -c {shlex.quote(script)}", {"RUN_VARIABLE": "yes"}, tmp_path)
    process.join()
    assert process.exitcode == 3 and (tmp_path / "seen").read_text() == "yes"

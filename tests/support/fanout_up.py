"""`fanout up` as a user starts it, for the tests of the whole command: the package installed apart from
the checkout, the command started in a folder of its own, and what it printed."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

from fanout.localstack.processes import Child, spawn
from tests.support.database import locked, seed_database
from tests.support.paths import REPO_ROOT, SESSION_FOLDER_ENV
from tests.support.processes import descendants
from tests.support.stacks import wait_for

READY = "Ctrl-C stops everything"
"""The last line `fanout up` prints once everything runs."""


def installed_package(target: Path) -> Path:
    """`pip install --no-deps --target` of this checkout's wheel (`built_wheel`): the package as a user gets
    it, without its dependencies (the test's own environment has them)."""
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(built_wheel())]
    subprocess.run(argv, check=True, capture_output=True, timeout=600)
    return target


def built_wheel() -> Path:
    """This checkout's wheel, built once per test session (in its scratch folder, under a lock: the first test
    process that needs it builds it, the others wait) from a copy of the checkout, as pip leaves build/ and
    *.egg-info beside its source. Built without isolation when this environment can build wheels itself (no
    index needed), else pip fetches the build backend."""
    folder = Path(os.environ.get(SESSION_FOLDER_ENV) or tempfile.mkdtemp(prefix="fanout-wheel-")) / "wheel"
    folder.mkdir(parents=True, exist_ok=True)
    with locked(folder / "build.lock"):
        if not (wheels := sorted(folder.glob("fanout-*.whl"))):
            build_wheel(folder)
            wheels = sorted(folder.glob("fanout-*.whl"))
    (wheel,) = wheels
    return wheel


def build_wheel(folder: Path) -> None:
    """`pip wheel --no-deps` of a copy of the checkout into `folder`."""
    isolation: list[str] = []
    try:
        import setuptools
        from packaging.version import Version

        if Version(setuptools.__version__) >= Version("70.1"):  # builds wheels without the `wheel` package
            isolation = ["--no-build-isolation"]
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as build:
        source = Path(build) / "fanout"
        shutil.copytree(REPO_ROOT, source, ignore=shutil.ignore_patterns(".*", "build", "*.egg-info", "test-artifacts"))
        argv = [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            *isolation,
            "-w",
            str(folder),
            str(source),
        ]
        subprocess.run(argv, check=True, capture_output=True, timeout=600)


@contextmanager
def running_fanout_up(
    program: str | Path, *options: str, workdir: Path, logs: Path, env: Mapping[str, str], timeout: float
) -> Iterator[tuple[Child, Path]]:
    """`<program> up --home <workdir>/.fanout` on free ports, started in `workdir` with this environment
    (without FANOUT_* and PREFECT_API_* settings) plus `env`, once it says it is ready: the process and its
    home. Killed (with its process group) on exit."""
    home = workdir / ".fanout"
    seeded = seed_database(home / "prefect") if "postgres" not in options else {}
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("FANOUT_", "PREFECT_API"))}
    environment.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", **seeded, **env)
    argv = [str(program), "up", "--home", str(home), "--prefect-port", "0", "--webhook-port", "0", *options]
    child = spawn("fanout-up", argv, environment, logs, cwd=workdir)
    try:
        wait_for(
            lambda: READY in child.log_path.read_text() or child.process.poll() is not None,
            timeout=timeout,
            interval=0.25,
            what="fanout up to be ready",
        )
        assert child.process.poll() is None, child.log_tail()
        yield child, home
    finally:
        stop_everything(child)


def stop_everything(child: Child) -> None:
    """Stop `fanout up` as Ctrl-C would (it stops the processes it started), then SIGKILL whatever of them
    is left: they run in sessions of their own, which killing its process group does not reach."""
    started = descendants(child.process.pid)
    child.stop(grace=60)
    for pid in started:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def printed(child: Child, label: str) -> str:
    """What `fanout up` printed after `label:`."""
    match = re.search(rf"^{label}:\s+(\S+)", child.log_path.read_text(), re.M)
    assert match, child.log_tail()
    return match.group(1)

"""`fanout up` starts the whole stack, `fanout start --wait` drives a run through it, SIGTERM stops every child."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.processes import Child, spawn
from tests.conftest import REPO_ROOT
from tests.e2e.conftest import wait_for

pytestmark = pytest.mark.e2e

FANOUT = str(Path(sys.executable).with_name("fanout"))


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (children, grandchildren, ...), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def fanout_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Child, Path]]:
    """One `fanout up` for this module (the SIGTERM test, last, stops it); killed if still running at the end."""
    tmp_path = tmp_path_factory.mktemp("up")
    home = tmp_path / ".fanout"
    env = {name: value for name, value in os.environ.items() if not name.startswith("FANOUT_")}
    env["FANOUT_RESULT_STORAGE"] = str(tmp_path / "results")
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    argv = [FANOUT, "up", "--home", str(home), "--prefect-port", "0", "--webhook-port", "0"]
    child = spawn("fanout-up", argv, env, tmp_path / "logs", cwd=tmp_path)
    try:
        wait_for(
            lambda: "Ctrl-C stops everything" in child.log_path.read_text() or child.process.poll() is not None,
            timeout=300,
            interval=1,
            what="fanout up to be ready",
        )
        assert child.process.poll() is None, child.log_tail()
        yield child, home
    finally:
        child.kill()


def fanout(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FANOUT, *args], cwd=cwd, env=env or dict(os.environ), capture_output=True, text=True, timeout=300
    )


def test_up_prints_where_everything_is(fanout_up: tuple[Child, Path]) -> None:
    """`fanout up` prints the UI URL, the webhook URL and where the token is; the token file is private."""
    child, home = fanout_up
    log = child.log_path.read_text()
    assert "Prefect UI:   http://127.0.0.1:" in log and "Webhook:      http://127.0.0.1:" in log
    assert f"Token:        cat {home.resolve() / 'webhook-token'}" in log
    assert (home / "webhook-token").stat().st_mode & 0o077 == 0
    assert (home / "prefect" / "prefect.db").exists()


def test_start_with_bad_input_exits_2_and_starts_nothing(fanout_up: tuple[Child, Path]) -> None:
    """`fanout start --count 0` and a wrong token both exit 2 with a message."""
    _, home = fanout_up
    bad = fanout("start", "--home", str(home), "--count", "0", cwd=home.parent)
    assert bad.returncode == 2 and "count must be at least 1" in bad.stderr
    env = {**os.environ, "FANOUT_WEBHOOK_TOKEN": "definitely-not-the-token"}
    unauthorised = fanout("start", "--home", str(home), cwd=home.parent, env=env)
    assert unauthorised.returncode == 2 and "401" in unauthorised.stderr


def test_start_wait_runs_through_the_stack_and_sigterm_stops_every_child(fanout_up: tuple[Child, Path]) -> None:
    """`fanout start --count 3 --wait` prints the output; SIGTERM to `fanout up` stops every process it started."""
    child, home = fanout_up
    done = fanout("start", "--home", str(home), "--count", "3", "--wait", "--timeout", "240", cwd=home.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == ["Processed item-1", "Processed item-2", "Processed item-3"]
    assert "Completed" in done.stderr  # the progress bar's last state
    started = descendants(child.process.pid)
    assert len(started) >= 3  # server, worker, webhook (and what they spawned)
    child.process.send_signal(signal.SIGTERM)
    assert child.process.wait(timeout=120) == 0
    wait_for(lambda: not any(alive(pid) for pid in started), timeout=30, what="every child to exit")


def test_the_repo_root_has_the_prefect_yaml_that_up_deploys() -> None:
    """`fanout up` deploys from the checkout's prefect.yaml, which has no absolute paths."""
    text = (REPO_ROOT / "prefect.yaml").read_text()
    assert "fan_out_fan_in" in text and str(REPO_ROOT) not in text and "\n    entrypoint: /" not in text

"""`fanout up` of the installed package starts the whole stack, closed by default; `fanout start --wait` drives a
run through it; SIGTERM stops every child."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from fanout.localstack.processes import Child
from tests.support.fanout_up import printed
from tests.support.processes import alive, descendants
from tests.support.stacks import poll_until_finished, wait_for

pytestmark = pytest.mark.e2e

FANOUT = str(Path(sys.executable).with_name("fanout"))


def prefect_auth(home: Path) -> httpx.BasicAuth:
    """The Prefect API's basic auth, from where `fanout up` keeps it."""
    user, password = (home / "prefect-auth").read_text().strip().split(":", 1)
    return httpx.BasicAuth(user, password)


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


def test_the_seed_posted_to_the_installed_stack_completes(fanout_up: tuple[Child, Path]) -> None:
    """POST the seed to the webhook of the installed stack, poll: 200 Completed with the five results."""
    _, home = fanout_up
    headers = {"Authorization": f"Bearer {(home / 'webhook-token').read_text().strip()}"}
    url = (home / "webhook-url").read_text().strip()
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        started = client.post("/api/start-fanout")
        assert started.status_code == 202, started.text
        finished = poll_until_finished(client, started.json()["statusQueryGetUri"], timeout=240)
    assert finished.status_code == 200 and finished.json()["runtimeStatus"] == "Completed", finished.text
    assert finished.json()["output"] == [f"Processed item-{i}" for i in range(1, 6)]


def test_the_installed_stack_deploys_by_module_not_from_a_checkout(fanout_up: tuple[Child, Path]) -> None:
    """The seed's deployment names the flow by module and has no pull step into a source tree."""
    child, home = fanout_up
    api = printed(child, "Prefect API")
    deployment = httpx.get(f"{api}/deployments/name/fan-out-fan-in/default", auth=prefect_auth(home), timeout=30)
    assert deployment.status_code == 200, deployment.text
    assert deployment.json()["entrypoint"] == "fanout.seed.fan_out_fan_in"
    assert not deployment.json()["pull_steps"] and deployment.json()["path"] is None


def test_the_prefect_api_refuses_anonymous_calls_by_default(fanout_up: tuple[Child, Path]) -> None:
    """Without `--no-auth` the Prefect API answers 401 without the auth string and 200 with it;
    `fanout up` says where the string is."""
    child, home = fanout_up
    api = printed(child, "Prefect API")
    assert printed(child, "Prefect auth") == "cat"
    assert httpx.post(f"{api}/flow_runs/filter", json={}, timeout=30).status_code == 401
    assert httpx.post(f"{api}/flow_runs/filter", json={}, auth=prefect_auth(home), timeout=30).status_code == 200


def start_event(instance_id: str) -> list[dict[str, object]]:
    """A `fanout.start` event whose payload is a one-item request for `instance_id`."""
    return [
        {
            "id": str(uuid.uuid4()),
            "occurred": "2026-01-01T00:00:00Z",
            "event": "fanout.start",
            "resource": {"prefect.resource.id": "fanout.starter"},
            "payload": {"count": 1, "instance_id": instance_id},
        }
    ]


def test_an_anonymous_start_event_starts_nothing(fanout_up: tuple[Child, Path]) -> None:
    """A `fanout.start` event without the auth string is refused (401) and starts no run, while the
    same event with it, sent after, does."""
    child, home = fanout_up
    api = printed(child, "Prefect API")
    anonymous, control = f"anon-{uuid.uuid4().hex[:8]}", f"ctl-{uuid.uuid4().hex[:8]}"
    assert httpx.post(f"{api}/events", json=start_event(anonymous), timeout=30).status_code == 401
    sent = httpx.post(f"{api}/events", json=start_event(control), auth=prefect_auth(home), timeout=30)
    assert sent.status_code in (200, 204), sent.text

    def instances() -> set[str]:
        runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 200}, auth=prefect_auth(home), timeout=30)
        return {str((run["parameters"].get("request") or {}).get("instance_id")) for run in runs.json()}

    seen = wait_for(lambda: control in instances() and instances(), timeout=120, what="the authenticated event's run")
    assert anonymous not in seen


def test_the_home_and_every_file_in_it_are_owner_only(fanout_up: tuple[Child, Path]) -> None:
    """`.fanout` is 0700, its folders 0700 and its files 0600: database, logs, token, auth, checkpoints."""
    _, home = fanout_up
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    files = [path for path in home.rglob("*") if path.is_file()]
    assert {"prefect.db", "webhook-token", "prefect-auth", "webhook-url"} <= {path.name for path in files}
    assert any(path.name.startswith("journal-") for path in files)  # the seed's checkpoints, under .fanout
    assert {str(path): oct(stat.S_IMODE(path.stat().st_mode)) for path in files if path.stat().st_mode & 0o077} == {}
    assert {stat.S_IMODE(path.stat().st_mode) for path in home.rglob("*") if path.is_dir()} == {0o700}


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

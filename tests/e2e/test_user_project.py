"""A new user's Prefect project, with its own `flows/` and `deployments/` packages and fanout installed from its
wheel into a fresh virtualenv: `fanout run`, `prefect deploy` + the `fanout-warm` worker, and `fanout up` serving
the project's deployment through the Durable Functions route.

The project's flow is the Durable Functions "backup site content" sample: list the files under a folder,
copy each (a mapped task), return the total bytes. It imports a module of the project's that only its
deployment's `PYTHONPATH` job variable reaches, and records an `env` job variable, so a run that completes
proves both reached the flow-run process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import time
import venv
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fanout.localstack.processes import Child, free_port, spawn, wait_healthy
from fanout.localstack.stack import LocalStack
from tests.support.database import seed_database
from tests.support.fanout_up import built_wheel
from tests.support.stacks import FINAL_STATES, poll_until_finished, wait_for

pytestmark = pytest.mark.e2e

POOL = "user-pool"
FLOW = "backup-site-content"
DEPLOYMENT = f"{FLOW}/nightly"
FILES = {"index.html": 120, "about.html": 45, "img/logo.png": 2048}
TOTAL = sum(FILES.values())

FLOW_SOURCE = '''\
"""The Durable Functions backup sample as a plain Prefect flow of the user's project."""

import os
from pathlib import Path

from prefect import flow, task

import sitecopy  # lib/sitecopy.py: reachable only through the deployment's PYTHONPATH


@task
def copy_file(path: str) -> int:
    return sitecopy.copied_bytes(path)


@flow
def backup_site_content(root_directory: str) -> int:
    files = sorted(str(path) for path in Path(root_directory).rglob("*") if path.is_file())
    total = sum(copy_file.map(files).result())
    marker = Path(root_directory).parent / "marker.txt"
    marker.write_text(f"{os.environ.get('PROJECT_MARKER')} {sitecopy.NAME} {total}")
    return total
'''
LIB_SOURCE = """\
from pathlib import Path

NAME = "sitecopy"


def copied_bytes(path: str) -> int:
    return Path(path).stat().st_size
"""
PREFECT_YAML = """\
name: user-project
deployments:
  - name: nightly
    entrypoint: flows/backup.py:backup_site_content
    work_pool:
      name: {pool}
      job_variables:
        env:
          PYTHONPATH: {lib}
          PROJECT_MARKER: from-job-variables
"""
OWN_COMMAND = """\
  - name: own-command
    entrypoint: flows/backup.py:backup_site_content
    work_pool:
      name: {pool}
      job_variables:
        command: {python} -m prefect.engine
        env:
          PYTHONPATH: {lib}
          PROJECT_MARKER: from-job-variables
"""


@pytest.fixture(scope="session")
def project_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with fanout installed from its wheel (built once per session; its dependencies:
    this environment's, through a path entry, so nothing is downloaded); the venv's python."""
    folder = tmp_path_factory.mktemp("wheel-venv")
    wheel = built_wheel()
    venv.create(folder / "venv", with_pip=False)
    python = folder / "venv" / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(purelib) / "zz-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    return python


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A new Prefect project: its own `flows/` and `deployments/` packages, a module only its deployment's
    PYTHONPATH reaches, a prefect.yaml, and a site folder to back up."""
    folder = tmp_path / "project"
    for package in ("flows", "deployments"):
        (folder / package).mkdir(parents=True)
        (folder / package / "__init__.py").write_text(f'"""The project\'s own {package}."""\n')
    (folder / "flows" / "backup.py").write_text(FLOW_SOURCE)
    (folder / "lib").mkdir()
    (folder / "lib" / "sitecopy.py").write_text(LIB_SOURCE)
    (folder / "prefect.yaml").write_text(PREFECT_YAML.format(pool=POOL, lib=folder / "lib"))
    for name, size in FILES.items():
        path = tmp_path / "site" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * size)
    return folder


def project_env(python: Path, **extra: str) -> dict[str, str]:
    """The environment of a process in the project: none of the test's FANOUT_*, PREFECT_* or PYTHONPATH
    (the repository's `flows` must not be on the path), the venv's bin first."""
    kept = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("FANOUT_", "PREFECT_")) and name not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    kept["PATH"] = f"{python.parent}{os.pathsep}{kept.get('PATH', '')}"
    return {**kept, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", **extra}


def stack_env(python: Path, stack: LocalStack, project: Path) -> dict[str, str]:
    """A project process that talks to the session stack's Prefect server."""
    return project_env(
        python,
        PREFECT_API_URL=stack.api_url,
        PREFECT_HOME=str(project.parent / "prefect-home"),
        FANOUT_RESULT_STORAGE=str(project.parent / "results"),
    )


def run_in(project: Path, env: dict[str, str], *argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(argv), cwd=project, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_fanout_run_works_in_a_project_with_its_own_flows_and_deployments(
    project_python: Path, project: Path, stack: LocalStack
) -> None:
    """`fanout run` from the wheel, in a folder whose `flows` and `deployments` are the user's, runs the seed."""
    env = stack_env(project_python, stack, project)
    fanout = str(project_python.with_name("fanout"))
    ran = run_in(project, env, fanout, "run", "--count", "3", "--instance-id", f"user-run-{time.time_ns()}")
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads(ran.stdout) == ["Processed item-1", "Processed item-2", "Processed item-3"]


@pytest.fixture
def project_worker(project_python: Path, project: Path, stack: LocalStack) -> Iterator[Child]:
    """`prefect worker start --type fanout-warm` from the venv, in the project, on its pool; stopped after."""
    env = stack_env(project_python, stack, project)
    created = run_in(
        project, env, str(project_python), "-m", "prefect", "work-pool", "create", POOL, "--type", "process"
    )
    assert created.returncode == 0 or "already exists" in created.stdout + created.stderr, created.stderr[-2000:]
    port = free_port()
    argv = [str(project_python), "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "fanout-warm"]
    worker_env = {
        **env,
        "PREFECT_WORKER_WEBSERVER_HOST": "127.0.0.1",
        "PREFECT_WORKER_WEBSERVER_PORT": str(port),
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    child = spawn("project-worker", [*argv, "--with-healthcheck"], worker_env, project.parent / "logs", cwd=project)
    try:
        wait_healthy(f"http://127.0.0.1:{port}/health", child, timeout=120)
        yield child
    finally:
        child.stop()


def test_prefect_deploy_and_the_warm_worker_run_the_project_deployment_with_its_job_variables(
    project_python: Path, project: Path, stack: LocalStack, project_worker: Child
) -> None:
    """After `prefect deploy`, a `fanout-warm` worker runs each deployment with its PYTHONPATH and `env`: warm, or in its own `command`."""
    with (project / "prefect.yaml").open("a") as prefect_yaml:
        prefect_yaml.write(OWN_COMMAND.format(pool=POOL, lib=project / "lib", python=project_python))
    env = stack_env(project_python, stack, project)
    deployed = run_in(project, env, str(project_python), "-m", "prefect", "deploy", "--all", "--no-prompt")
    assert deployed.returncode == 0, (deployed.stdout + deployed.stderr)[-3000:]
    for deployment in (DEPLOYMENT, f"{FLOW}/own-command"):
        state = run_deployment(stack, deployment, {"root_directory": str(project.parent / "site")})
        assert state["type"] == "COMPLETED", f"{deployment}: {state}\n{project_worker.log_tail()}"
        marker = project.parent / "marker.txt"
        assert marker.read_text() == f"from-job-variables sitecopy {TOTAL}", deployment
        marker.unlink()


def run_deployment(stack: LocalStack, name: str, parameters: dict[str, object]) -> dict[str, object]:
    """Create a run of deployment `name` on the stack's server and wait for its final state."""
    with httpx.Client(base_url=stack.api_url, timeout=30) as api:
        deployment = api.get(f"/deployments/name/{name}").json()
        created = api.post(f"/deployments/{deployment['id']}/create_flow_run", json={"parameters": parameters})
        assert created.status_code == 201, created.text
        run_id = created.json()["id"]

        def finished() -> dict[str, object] | None:
            state = api.get(f"/flow_runs/{run_id}").json()["state"]
            return state if state and state["type"] in FINAL_STATES else None

        result: dict[str, object] = wait_for(finished, timeout=180, what=f"a run of {name}")
        return result


@pytest.fixture
def fanout_up(project_python: Path, project: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`fanout up` from the venv, in the project; its webhook URL and the headers a client sends. Stopped after.
    Its server starts from the session's migrated database, as every SQLite server of the suite does."""
    home = project.parent / "up-home"
    seed_database(home / "prefect")
    argv = [
        str(project_python.with_name("fanout")),
        "up",
        "--home",
        str(home),
        "--prefect-port",
        str(free_port()),
        "--webhook-port",
        str(free_port()),
        "--no-auth",
    ]
    child = spawn("fanout-up", argv, project_env(project_python), project.parent / "logs", cwd=project)
    try:
        url_file = home / "webhook-url"

        def ready() -> bool:
            if child.process.poll() is not None:
                raise AssertionError(f"fanout up exited with {child.process.returncode}:\n{child.log_tail()}")
            return url_file.exists() and "Ctrl-C stops everything." in child.log_path.read_text()

        wait_for(ready, timeout=600, interval=0.25, what="fanout up")
        token = (home / "webhook-token").read_text().strip()
        yield url_file.read_text().strip(), {"Authorization": f"Bearer {token}"}
    finally:
        child.stop(grace=30)


def test_fanout_up_serves_the_project_deployment_through_the_durable_functions_route(
    project: Path, fanout_up: tuple[str, dict[str, str]]
) -> None:
    """`fanout up` serves the project: a JSON string to `orchestrators/<flow name>` runs it; status, list and purge see it."""
    url, headers = fanout_up
    site = project.parent / "site"
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        started = client.post(
            "/runtime/webhooks/durabletask/orchestrators/backup_site_content",
            content=json.dumps(str(site)),
            headers={"Content-Type": "application/json"},
        )
        assert started.status_code == 202, started.text
        finished = poll_until_finished(client, started.json()["statusQueryGetUri"], timeout=300)
        body = finished.json()
        assert (body["runtimeStatus"], body["output"]) == ("Completed", TOTAL), body
        assert (body["name"], body["input"]) == (FLOW, {"root_directory": str(site)})
        assert (project.parent / "marker.txt").read_text() == f"from-job-variables sitecopy {TOTAL}"
        (listed,) = client.get("/runtime/webhooks/durabletask/instances").json()
        assert (listed["name"], listed["customStatus"]) == (FLOW, body["customStatus"])
        purged = client.delete(f"/runtime/webhooks/durabletask/instances/{body['instanceId']}")
        assert purged.status_code == 200 and purged.json()["instancesDeleted"] == 1, purged.text
        assert purged.json()["outputsDeleted"] == 1  # the flow's persisted return value

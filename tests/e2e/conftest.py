"""End-to-end fixtures on the test process's stack (`local_stack`, tests/conftest.py: a real Prefect server,
fanout's deployments, the real webhook; FANOUT_E2E_DATABASE=postgres puts it on PostgreSQL).

- `stack` (session): that stack, no worker.
- `start_worker` (function): starts workers with this test's FANOUT_* environment (the stack's
  result storage, its test processor); stops them, and deletes unfinished runs, at teardown.
- `pooled_worker` (function): takes workers with this test's FANOUT_* environment (plus `extra`) from the
  session's frozen ones, and gives them back after, for the next test with the same environment
  (tests/support/worker_pool.py); `worker`: one such worker, for tests that need nothing special.
- `execution_log`: the scripted processor's log, one folder per test process emptied for each test, so the
  tests of one processor setting share a pooled worker.
- `webhook`: an httpx client for the webhook with the bearer token.
- `prefect_api`: an httpx client for the stack's Prefect REST API.
- `fanout_up`, `production_up` (module): `fanout up` of the installed package, and on PostgreSQL with auth.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fanout.localstack.postgres import LocalPostgres
from fanout.localstack.processes import Child
from fanout.localstack.stack import LocalStack
from tests.support.fanout_up import installed_package, running_fanout_up
from tests.support.stacks import delete_unfinished_runs, fanout_env
from tests.support.worker_pool import WorkerPool


@pytest.fixture(scope="session")
def stack(local_stack: LocalStack) -> LocalStack:
    """The test process's stack (server, deployments, automations, webhook)."""
    return local_stack


@pytest.fixture(autouse=True)
def shared_result_storage(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test on the session's stack keeps its results where the stack's webhook reads them (outputs,
    results pages), not in its own folder: workers and webhook share result storage, as in `fanout up`."""
    if "stack" in request.fixturenames:
        stack: LocalStack = request.getfixturevalue("stack")
        monkeypatch.setenv("FANOUT_RESULT_STORAGE", stack.env["FANOUT_RESULT_STORAGE"])


@pytest.fixture
def start_worker(stack: LocalStack) -> Iterator[Callable[..., Child]]:
    """Start workers that run flows with this test's FANOUT_* environment (plus `extra`)."""
    started: list[Child] = []

    def start(**extra: str) -> Child:
        child = stack.start_worker(env={**fanout_env(), **extra})
        started.append(child)
        return child

    yield start
    for child in started:
        stack.stop_worker(child)
    delete_unfinished_runs(stack)


@pytest.fixture(scope="session")
def worker_pool(stack: LocalStack) -> Iterator[WorkerPool]:
    """The session's frozen warm workers, stopped at its end."""
    pool = WorkerPool(stack)
    yield pool
    pool.close()


@pytest.fixture
def pooled_worker(request: pytest.FixtureRequest, worker_pool: WorkerPool) -> Iterator[Callable[..., Child]]:
    """Take workers with this test's FANOUT_* environment (plus `extra`): the last test's with the same
    environment if there was one; unfinished runs are deleted after, and each worker kept for the next such
    test unless this one failed."""
    failed_before = request.session.testsfailed
    taken: list[tuple[Child, dict[str, str]]] = []

    def take(**extra: str) -> Child:
        env = {**fanout_env(), **extra}
        child = worker_pool.take(env)
        taken.append((child, env))
        return child

    yield take
    delete_unfinished_runs(worker_pool.stack)
    for child, env in taken:
        worker_pool.give_back(child, env, keep=request.session.testsfailed == failed_before)


@pytest.fixture
def worker(pooled_worker: Callable[..., Child]) -> Child:
    """One pooled worker with this test's environment."""
    return pooled_worker()


@pytest.fixture(scope="session")
def execution_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder this test process's scripted runs record their executions in."""
    return tmp_path_factory.mktemp("executions")


@pytest.fixture
def execution_log(monkeypatch: pytest.MonkeyPatch, execution_folder: Path) -> Path:
    """The scripted processor, recording each execution in the test process's execution folder, emptied
    first: one path for every test, so a worker started for one test serves the next with the same settings.
    No earlier run writes here: a test that uses it sees its runs end before it passes, and a worker whose
    test failed is not kept."""
    for entry in execution_folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    monkeypatch.setenv("FANOUT_TEST_LOG_DIR", str(execution_folder))
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.processors:scripted")
    return execution_folder


@pytest.fixture
def webhook(stack: LocalStack) -> Iterator[httpx.Client]:
    """An HTTP client for the stack's webhook, sending the bearer token; unfinished runs are deleted after."""
    with httpx.Client(base_url=stack.webhook_url, headers=stack.webhook_headers, timeout=30) as client:
        yield client
    delete_unfinished_runs(stack)


@pytest.fixture
def prefect_api(stack: LocalStack) -> Iterator[httpx.Client]:
    """An HTTP client for the stack's Prefect REST API."""
    with httpx.Client(base_url=stack.api_url, headers=stack.api_headers(), timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def fanout_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Child, Path]]:
    """One `fanout up` of the *installed* package, in a folder that is not the checkout, with no
    checkout on its path; for its module (the SIGTERM test, last, stops it); killed if still running."""
    folder = tmp_path_factory.mktemp("up")
    installed = installed_package(folder / "site")
    project = folder / "project"
    project.mkdir()
    with running_fanout_up(
        installed / "bin" / "fanout",
        workdir=project,
        logs=folder / "logs",
        env={"PYTHONPATH": str(installed)},
        timeout=300,
    ) as up:
        yield up


@pytest.fixture(scope="module")
def production_up() -> Iterator[tuple[Child, Path]]:
    """One `fanout up --database postgres --auth` in a folder the `postgres` user can reach; the
    SIGTERM test (last) stops it; whatever is left (the process, the cluster) is stopped at the end."""
    root = Path(tempfile.mkdtemp(prefix="fanout-up-"))
    root.chmod(0o755)
    env = {"FANOUT_RESULT_STORAGE": str(root / "results")}
    try:
        with running_fanout_up(
            Path(sys.executable).with_name("fanout"),
            *("--database", "postgres", "--auth"),
            workdir=root,
            logs=root / "logs",
            env=env,
            timeout=400,
        ) as up:
            yield up
    finally:
        LocalPostgres(folder=root / ".fanout" / "postgres").stop()
        shutil.rmtree(root, ignore_errors=True)

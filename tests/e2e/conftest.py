"""End-to-end fixtures on the test process's stack (`local_stack`, tests/conftest.py: a real Prefect server,
fanout's deployments, the real webhook; FANOUT_E2E_DATABASE=postgres puts it on PostgreSQL).

- `stack` (session): that stack, no worker.
- `start_worker` (function): starts workers with this test's FANOUT_* environment (the stack's
  result storage, its test processor); stops them, and deletes unfinished runs, at teardown.
- `worker`: one such worker, for tests that need nothing special; kept frozen between tests and reused by the
  next test with the same environment (tests/support/worker_pool.py).
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
def worker(request: pytest.FixtureRequest, worker_pool: WorkerPool) -> Iterator[Child]:
    """One worker with this test's environment, the last test's with the same environment if there was one;
    unfinished runs are deleted after, and the worker kept for the next such test unless this one failed."""
    env = fanout_env()
    failed_before = request.session.testsfailed
    child = worker_pool.take(env)
    yield child
    delete_unfinished_runs(worker_pool.stack)
    worker_pool.give_back(child, env, keep=request.session.testsfailed == failed_before)


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

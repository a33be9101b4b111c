"""Fixtures for every tier.

Every test starts from a clean configuration (no FANOUT_* overrides, its own result folder) and carries
the marker of its folder (tests/unit -> `unit`, ...), so `pytest -m unit` selects a tier. The stack of
real processes the e2e and fault tiers share (`local_stack`) is started once per test process, and tests
that share a module-scoped fixture run in one test process (tests/support/scheduling.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import Generator, Iterator
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.support.database import seed_database
from tests.support.paths import CHROMIUM, SESSION_FOLDER_ENV, TESTS
from tests.support.paths import REPO_ROOT as REPO_ROOT  # re-exported: tests import it from here

if TYPE_CHECKING:
    from fanout.localstack.stack import LocalStack

SESSION_MARKER = "PYTEST_FANOUT_SESSION"
"""Set in the test session's environment, so every process it starts carries it: after the suite, a
process that still carries it was left running."""
# The test folders, each its own marker (declared with a description in pyproject.toml).
FOLDER_MARKERS = ("unit", "integration", "e2e", "faults", "ui", "postgres")
# The order tests are handed out in: the longest first, so the two test processes of `make test` finish
# together instead of one waiting on a long module started last (the many short unit tests fill the end).
START_ORDER = ("slow", "e2e", "faults", "ui", "integration", "unit")
LOG_TAIL_LINES = 60


TELEMETRY_OFF = {"PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
"""The Prefect servers the suite starts (the integration tier's harness among them) send no telemetry:
where Prefect's telemetry host cannot be reached, as on a CI machine, a server that tries answers every
client noticeably later."""


def pytest_configure(config: pytest.Config) -> None:
    """Mark this session's processes, turn Prefect's server telemetry off unless asked for, and give the
    session a scratch folder; xdist's test processes, and every process they start, inherit all three."""
    os.environ.setdefault(SESSION_MARKER, uuid.uuid4().hex)
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)
    if SESSION_FOLDER_ENV not in os.environ:
        os.environ[SESSION_FOLDER_ENV] = tempfile.mkdtemp(prefix="fanout-tests-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop(SESSION_FOLDER_ENV), ignore_errors=True))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Hand out the tests of a module-scoped fixture to one test process (tests/support/scheduling.py)."""
    from tests.support.scheduling import ModuleGroupScheduling

    return ModuleGroupScheduling(config, log, Path(os.environ[SESSION_FOLDER_ENV]))


def pytest_sessionfinish(session: pytest.Session) -> None:
    """After the suite (in the controller, once its test processes have stopped their stacks), nothing the
    suite started is left running: whatever is, is reported and SIGKILLed."""
    if hasattr(session.config, "workerinput"):
        return
    from fanout.localstack.polling import wait_for
    from tests.support.processes import marked_processes, own_multiprocessing_helpers

    marker, mine = os.environ[SESSION_MARKER], os.getpid()
    ours = {mine} | own_multiprocessing_helpers(mine)  # in one process (-n 0), in-process pools leave these
    try:
        wait_for(lambda: not marked_processes(marker) - ours, 60, "the suite's processes to exit", interval=0.5)
    except TimeoutError:
        left = marked_processes(marker) - ours
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"processes left running after the suite (now killed): {describe(left)}", red=True)
        for pid in left:
            with suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def describe(pids: set[int]) -> str:
    """`pid: command line` of each process, for a report."""
    lines = []
    for pid in sorted(pids):
        with suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            lines.append(f"{pid}: {command[:160]}")
    return "; ".join(lines)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark each test with the folder it lives in; in a test process of xdist, say which modules' tests
    must run in one process (those of a module-scoped fixture); skip what needs a Debian package that is
    missing (never in CI, where that is a failure)."""
    missing = {} if os.environ.get("CI") else missing_debian_packages()
    for item in items:
        path = item.path.resolve()
        if path.is_relative_to(TESTS) and (folder := path.relative_to(TESTS).parts[0]) in FOLDER_MARKERS:
            item.add_marker(folder)
        for marker, reason in missing.items():
            if item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))
    items.sort(key=start_order)
    if hasattr(config, "workerinput"):
        from tests.support.scheduling import record_grouped_modules

        grouped = {item.nodeid.split("::")[0] for item in items if module_scoped(item)}
        record_grouped_modules(Path(os.environ[SESSION_FOLDER_ENV]), config.workerinput["workerid"], grouped)


def start_order(item: pytest.Item) -> int:
    """Where a test comes in START_ORDER: by its first marker there (a test with none comes last)."""
    return next((rank for rank, marker in enumerate(START_ORDER) if item.get_closest_marker(marker)), len(START_ORDER))


def module_scoped(item: pytest.Item) -> bool:
    """The test uses a fixture that lives as long as its module (one `fanout up`, one crash): its module's
    tests must run in one test process, in order."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(definitions[-1].scope == "module" for definitions in info.name2fixturedefs.values() if definitions)


def missing_debian_packages() -> dict[str, str]:
    """Markers whose tests cannot run here, with the reason a skip reports (`make test` installs both)."""
    missing = {}
    if not CHROMIUM.exists():
        missing["ui"] = f"Debian's chromium is not installed ({CHROMIUM}): sudo apt-get install chromium"
    from fanout.localstack.postgres import PostgresNotAvailable, binary_dir

    try:
        binary_dir()
    except PostgresNotAvailable:
        missing["postgres"] = "Debian's postgresql is not installed: sudo apt-get install postgresql"
    return missing


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test on a stack of real processes reports the end of their logs (server, workers, webhook):
    in CI they are the only record of what the processes saw."""
    report: pytest.TestReport = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    stack = getattr(stack, "local", stack)  # the fault tier's stack wraps the shared one
    home = getattr(stack, "home", None)
    if report.failed and isinstance(home, Path):
        for log in sorted((home / "logs").glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            report.sections.append((f"{log.name} (last {len(lines)} lines)", "\n".join(lines)))
    return report


@pytest.fixture(scope="session")
def results_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder that holds each test's result folder."""
    return tmp_path_factory.mktemp("results")


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch, results_root: Path) -> Iterator[Path]:
    """Clear FANOUT_* variables and point result storage at this test's own folder, made by its first
    write: most tests write none, and a folder per test (a `tmp_path` each) costs the session seconds
    of making and removing them."""
    for name in list(os.environ):
        if name.startswith("FANOUT_"):
            monkeypatch.delenv(name)
    results = results_root / uuid.uuid4().hex
    monkeypatch.setenv("FANOUT_RESULT_STORAGE", str(results))
    monkeypatch.setenv("FANOUT_RETRY_DELAY_SECONDS", "0")
    yield results


@pytest.fixture
def execution_log(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A folder where the scripted processor records each execution, and select that processor."""
    folder = tmp_path / "executions"
    folder.mkdir()
    monkeypatch.setenv("FANOUT_TEST_LOG_DIR", str(folder))
    monkeypatch.setenv("FANOUT_PROCESSOR", "tests.support.processors:scripted")
    return folder


@pytest.fixture(scope="session")
def stack_database_url() -> Iterator[str | None]:
    """The stack's Prefect database: SQLite in the stack's home, unless FANOUT_E2E_DATABASE_URL (or
    FANOUT_FAULTS_DATABASE_URL) names one or FANOUT_E2E_DATABASE=postgres asks for a private PostgreSQL
    cluster (started here, stopped after)."""
    if os.environ.get("FANOUT_E2E_DATABASE") == "postgres":
        from fanout.localstack.postgres import private_postgres

        with private_postgres() as cluster:
            yield cluster.database_url()
        return
    yield os.environ.get("FANOUT_E2E_DATABASE_URL") or os.environ.get("FANOUT_FAULTS_DATABASE_URL") or None


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory, stack_database_url: str | None) -> Iterator[LocalStack]:
    """One stack for this test process: a Prefect server with fanout's deployments and automations, and the
    webhook; no worker (tests start their own). The e2e and fault tiers share it: a test that kills workers
    or restarts the server leaves it whole. Always stopped at the end."""
    from fanout.localstack.stack import LocalStack
    from tests.support.stacks import STACK_TOKEN, stack_environment

    home = tmp_path_factory.mktemp("stack")
    seeded = seed_database(home / "prefect") if stack_database_url is None else {}
    env = stack_environment(home) | seeded
    local = LocalStack(home=home, database_url=stack_database_url, env=env, token=STACK_TOKEN)
    try:
        local.start_server()
        local.deploy()
        local.start_webhook()
        yield local
    finally:
        local.stop()

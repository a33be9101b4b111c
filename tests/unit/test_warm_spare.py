"""The warm worker's spare flow-run process: a run under other settings gets nothing it prepared."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any
from uuid import uuid4

import prefect.flow_engine
import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.settings import get_current_settings

import fanout.worker.warm_child as warm_child


@pytest.fixture(autouse=True)
def restore_environment() -> Iterator[None]:
    """`execute` writes the run's variables into os.environ; put it back."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def run_seen_by(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> dict[str, Any]:
    """What `execute` shows the run when a spare prepared an ExitStack: whether it was closed, and the API URL."""
    closed: list[bool] = []
    seen: dict[str, Any] = {}

    def run(flow_run: FlowRun, deployment: object) -> None:
        seen.update(prepared_closed=bool(closed), api_url=get_current_settings().api.url)

    monkeypatch.setattr(warm_child, "_run", run)
    prepared = ExitStack()
    prepared.callback(closed.append, True)
    flow_run = FlowRun(id=uuid4(), flow_id=uuid4(), name="run")
    warm_child.execute(flow_run.model_dump_json(), env, None, None, prepared=prepared)
    seen["closed_after"] = bool(closed)
    return seen


def test_a_run_that_changes_a_prefect_setting_gets_nothing_the_spare_prepared(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PREFECT_API_URL in the run's environment: what the spare prepared is closed before the run starts."""
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    seen = run_seen_by(monkeypatch, {"PREFECT_API_URL": "http://127.0.0.1:8/api"})
    assert seen["prepared_closed"] is True
    assert seen["api_url"] == "http://127.0.0.1:8/api"


def test_a_run_under_the_workers_settings_runs_in_what_the_spare_prepared(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing of Prefect's changes: the run uses the spare's preparation, closed only after the run."""
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    seen = run_seen_by(monkeypatch, {"FANOUT_ANYTHING": "1"})
    assert seen["prepared_closed"] is False
    assert seen["closed_after"] is True


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """`warm_spare.prepare()` with no Prefect server: no version check, no log or events service, no read of
    the server's default storage (each would wait on a refused connection)."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    from fanout.worker import warm_spare

    for check in ("raise_for_api_version_mismatch_once", "raise_for_api_version_mismatch"):  # newer, older Prefect
        monkeypatch.setattr(SyncPrefectClient, check, lambda self: None, raising=False)
    monkeypatch.setattr(APILogWorker, "instance", classmethod(lambda cls: None))
    monkeypatch.setattr(EventsWorker, "instance", classmethod(lambda cls: None))
    monkeypatch.setattr(warm_spare, "read_default_result_storage_ahead", lambda client: None)


@pytest.mark.parametrize("csrf", [True, False])
def test_a_spare_fetches_the_csrf_setting_only_for_a_client_that_uses_it(
    monkeypatch: pytest.MonkeyPatch, no_server: None, csrf: bool
) -> None:
    """The spare's one-row read, which only fetches the server's CSRF setting, is made only when the client supports CSRF."""
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_CSRF_SUPPORT_ENABLED, temporary_settings

    from fanout.worker import warm_spare

    reads: list[dict[str, Any]] = []
    monkeypatch.setattr(SyncPrefectClient, "read_flow_runs", lambda self, **options: reads.append(options))
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_CLIENT_CSRF_SUPPORT_ENABLED: csrf}):
        warm_spare.prepare().close()
    assert reads == ([{"limit": 1}] if csrf else [])


@pytest.mark.skipif(
    not hasattr(prefect.flow_engine, "observe_flow_run_suspension"),
    reason="this Prefect's engine opens no suspension observer",
)
@pytest.mark.parametrize("opened", [True, False])
def test_a_spare_hands_its_run_the_suspension_observer_only_when_it_opened(
    monkeypatch: pytest.MonkeyPatch, no_server: None, opened: bool
) -> None:
    """The engine observes through the spare's observer while the preparation lasts, if it opened; else its own."""
    import prefect.flow_engine
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_CSRF_SUPPORT_ENABLED, temporary_settings

    from fanout.core.prefect_adapter import OpenSuspensionObserver
    from fanout.worker import warm_spare

    monkeypatch.setattr(OpenSuspensionObserver, "open", lambda self, timeout: opened)
    engines_own = prefect.flow_engine.observe_flow_run_suspension
    settings = {PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_CLIENT_CSRF_SUPPORT_ENABLED: False}
    with temporary_settings(settings), warm_spare.prepare():
        replaced = prefect.flow_engine.observe_flow_run_suspension is not engines_own
    assert replaced is opened
    assert prefect.flow_engine.observe_flow_run_suspension is engines_own


def test_a_spare_starts_prefect_s_loop_for_sync_callers_before_its_run(
    monkeypatch: pytest.MonkeyPatch, no_server: None
) -> None:
    """The loop on which Prefect runs a sync caller's coroutines (a task's state, a result's write) is started
    by the spare: one coroutine has gone through it before the run arrives."""
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_CSRF_SUPPORT_ENABLED, temporary_settings
    from prefect.utilities.asyncutils import run_coro_as_sync

    from fanout.core.prefect_adapter import OpenSuspensionObserver
    from fanout.worker import warm_spare

    monkeypatch.setattr(OpenSuspensionObserver, "open", lambda self, timeout: False)
    ran: list[object] = []
    monkeypatch.setattr(warm_spare, "run_coro_as_sync", lambda coroutine: ran.append(run_coro_as_sync(coroutine)))
    settings = {PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_CLIENT_CSRF_SUPPORT_ENABLED: False}
    with temporary_settings(settings):
        warm_spare.prepare().close()
    assert ran == [None]

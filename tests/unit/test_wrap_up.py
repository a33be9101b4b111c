"""A run's wrap-up waits for its final state; outside a run it happens at once."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from uuid import uuid4

import pytest

from fanout.core import wrap_up as module
from fanout.core.wrap_up import after_final_state, wrap_up


def test_outside_a_flow_run_an_action_runs_at_once() -> None:
    """Nothing would run it later, so it runs now."""
    done: list[str] = []
    after_final_state(lambda: done.append("now"))
    assert done == ["now"]


def test_the_hook_runs_the_run_s_actions_in_order_and_only_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Actions wait for the hook of their own flow run, then run in the order they came."""
    run, other = SimpleNamespace(id=uuid4()), SimpleNamespace(id=uuid4())
    done: list[str] = []
    monkeypatch.setattr(module, "_current_flow_run_id", lambda: run.id)
    after_final_state(lambda: done.append("first"))
    after_final_state(lambda: done.append("second"))
    wrap_up(None, other, None)
    assert done == []
    wrap_up(None, run, None)
    wrap_up(None, run, None)
    assert done == ["first", "second"]


def test_a_failing_action_is_logged_and_the_rest_still_run(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Bookkeeping that fails cannot change the recorded outcome, nor skip the bookkeeping after it."""
    run = SimpleNamespace(id=uuid4())
    done: list[str] = []
    monkeypatch.setattr(module, "_current_flow_run_id", lambda: run.id)

    def broken() -> None:
        raise RuntimeError("API down")

    after_final_state(broken)
    after_final_state(lambda: done.append("after"))
    with caplog.at_level(logging.WARNING):
        wrap_up(None, run, None)
    assert done == ["after"]
    assert "API down" in caplog.text


def test_a_block_that_stopped_on_an_exception_wraps_up_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A suspended run (Prefect's Pause) gets no final-state hook in this process, so it cannot wait for one."""
    run = SimpleNamespace(id=uuid4())
    done: list[str] = []
    monkeypatch.setattr(module, "_current_flow_run_id", lambda: run.id)
    after_final_state(lambda: done.append("now"), stopped=KeyboardInterrupt())
    assert done == ["now"]

"""The crash-resume automations' shape, and that applying them twice changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from fanout.core.liveness import ALIVE_EVENT
from fanout.core.settings import get_settings
from fanout.service.automations import (
    GIVE_UP,
    HEARTBEATS,
    RETRY,
    SILENT,
    apply_automations,
    fanout_automations,
    retry_run_counts,
    worker_environment,
)

DEPLOYMENT = UUID("00000000-0000-0000-0000-000000000001")


def by_name(**overrides: object) -> dict[str, Any]:
    return {a.name: a for a in fanout_automations([DEPLOYMENT], get_settings(**overrides))}


def test_every_automation_is_scoped_to_fanout_deployments() -> None:
    """Each automation only matches flow runs related to the given deployment."""
    for automation in by_name().values():
        related = automation.trigger.match_related
        assert related["prefect.resource.id"] == [f"prefect.deployment.{DEPLOYMENT}"]
        assert related["prefect.resource.role"] == ["deployment"]
        assert automation.trigger.for_each == {"prefect.resource.id"}


def test_missing_heartbeats_crash_the_run_after_the_window() -> None:
    """A proactive trigger waits `crash_after_seconds` for a heartbeat or a state that ends them, then sets Crashed."""
    heartbeats = by_name(crash_after_seconds=120)[HEARTBEATS]
    assert heartbeats.trigger.posture == "Proactive"
    assert heartbeats.trigger.after == {"prefect.flow-run.heartbeat"}
    assert {"prefect.flow-run.heartbeat", "prefect.flow-run.Completed"} <= heartbeats.trigger.expect
    assert heartbeats.trigger.within == timedelta(seconds=120)
    assert heartbeats.actions[0].state == "CRASHED"


def test_a_silent_run_is_retried_as_the_same_run_after_the_liveness_window() -> None:
    """No alive event nor state change for `silent_after_seconds` at run counts 1..max: AwaitingRetry, no Crashed step."""
    silent = by_name(silent_after_seconds=10, max_auto_retries=2)[SILENT]
    assert silent.trigger.posture == "Proactive" and silent.trigger.after == {ALIVE_EVENT}
    assert {ALIVE_EVENT, "prefect.flow-run.Completed", "prefect.flow-run.AwaitingRetry"} <= silent.trigger.expect
    assert silent.trigger.within == timedelta(seconds=10) and silent.trigger.match["prefect.run-count"] == ["1", "2"]
    assert (silent.actions[0].state, silent.actions[0].name) == ("SCHEDULED", "AwaitingRetry") and silent.enabled


@pytest.mark.parametrize("name", [SILENT, HEARTBEATS])
def test_a_sign_of_life_waits_for_the_next_or_for_a_state_that_ends_the_run(name: str) -> None:
    """The liveness windows expect the states a Running run leaves to, and not the ones that start a run
    (each expected event costs the server a write)."""
    expect = by_name()[name].trigger.expect
    ending = {"Completed", "Failed", "Crashed", "Cancelling", "Cancelled", "AwaitingRetry", "Paused"}
    assert {f"prefect.flow-run.{state}" for state in ending} <= expect
    assert not {f"prefect.flow-run.{state}" for state in ("Scheduled", "Pending", "Submitting", "Running")} & expect
    assert not any("*" in event for event in expect)


def test_a_crash_waits_for_a_reschedule_not_for_the_run_that_follows_it() -> None:
    """Retry expects the states that show a crash was handled; Pending, Running and Completed only follow those."""
    expect = by_name()[RETRY].trigger.expect
    assert {"prefect.flow-run.AwaitingRetry", "prefect.flow-run.Scheduled", "prefect.flow-run.Cancelled"} <= expect
    assert not {"prefect.flow-run.Pending", "prefect.flow-run.Running", "prefect.flow-run.Completed"} & expect


def test_the_retry_window_comes_from_the_settings() -> None:
    """FANOUT_RETRY_WINDOW_SECONDS is how long the retry trigger waits for the worker's second crash report."""
    assert by_name(retry_window_seconds=12)[RETRY].trigger.within == timedelta(seconds=12)


def test_crashed_runs_are_retried_as_the_same_run_up_to_the_cap() -> None:
    """Retry sets AwaitingRetry for run counts 1..max_auto_retries, never 0."""
    retry = by_name(max_auto_retries=2)[RETRY]
    assert retry.trigger.posture == "Proactive" and retry.trigger.after == {"prefect.flow-run.Crashed"}
    assert retry.trigger.match["prefect.run-count"] == ["1", "2"]
    assert "prefect.flow-run.AwaitingRetry" in retry.trigger.expect
    assert (retry.actions[0].state, retry.actions[0].name) == ("SCHEDULED", "AwaitingRetry")
    assert retry.enabled


def test_zero_retries_disables_the_retry_automation() -> None:
    """With max_auto_retries=0 nothing is retried and a first crash fails the run."""
    automations = by_name(max_auto_retries=0)
    assert (
        not automations[RETRY].enabled
        and not automations[SILENT].enabled
        and retry_run_counts(get_settings(max_auto_retries=0)) == []
    )
    assert automations[GIVE_UP].enabled and automations[GIVE_UP].trigger.match["prefect.run-count"] == ["1"]


def test_a_crash_after_the_last_retry_fails_the_run_with_a_message() -> None:
    """Give-up reacts to a crash at run count max_auto_retries + 1, saying how many retries it had."""
    give_up = by_name(max_auto_retries=3)[GIVE_UP]
    assert give_up.trigger.posture == "Reactive" and give_up.trigger.expect == {"prefect.flow-run.Crashed"}
    assert give_up.trigger.match["prefect.run-count"] == ["4"]
    assert give_up.actions[0].state == "FAILED" and "3 automatic retries" in give_up.actions[0].message


def test_no_deployment_is_refused() -> None:
    """Automations without a scope would act on every flow run: refused."""
    with pytest.raises(ValueError):
        fanout_automations([], get_settings())


def test_workers_get_the_heartbeat_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker environment carries PREFECT_FLOWS_HEARTBEAT_FREQUENCY from FANOUT_HEARTBEAT_SECONDS."""
    monkeypatch.setenv("FANOUT_HEARTBEAT_SECONDS", "45")
    assert worker_environment(get_settings()) == {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": "45"}


@pytest.mark.parametrize(
    "overrides",
    [
        {"heartbeat_seconds": 29},
        {"crash_after_seconds": 59},
        {"heartbeat_seconds": 60, "crash_after_seconds": 90},
        {"max_auto_retries": -1},
        {"liveness_seconds": 5, "silent_after_seconds": 14},
        {"retry_window_seconds": 9},
        {"silent_after_seconds": 9},
    ],
)
def test_bad_crash_settings_are_rejected(overrides: dict[str, float]) -> None:
    """Heartbeats under 30 s, a window under two heartbeats or three liveness events, a proactive window
    under Prefect's 10 s floor, or negative retries are refused."""
    with pytest.raises(ValueError):
        get_settings(**overrides)


class FakeClient:
    """Just enough of PrefectClient to hold automations by name."""

    def __init__(self) -> None:
        self.automations: dict[UUID, Any] = {}

    def read_automations_by_name(self, name: str) -> list[Any]:
        return [type("A", (), {"id": key})() for key, a in self.automations.items() if a.name == name]

    def create_automation(self, automation: Any) -> UUID:
        key = uuid4()
        self.automations[key] = automation
        return key

    def update_automation(self, key: UUID, automation: Any) -> None:
        self.automations[key] = automation

    def delete_automation(self, key: UUID) -> None:
        del self.automations[key]


def test_applying_twice_updates_instead_of_duplicating() -> None:
    """A second apply updates the four automations in place."""
    client = FakeClient()
    first = apply_automations(client, [DEPLOYMENT], get_settings())
    second = apply_automations(client, [DEPLOYMENT], get_settings(max_auto_retries=1))
    assert [a.action for a in first] == ["created"] * 4 and [a.action for a in second] == ["updated"] * 4
    assert [a.id for a in first] == [a.id for a in second] and len(client.automations) == 4
    assert client.automations[second[2].id].trigger.match["prefect.run-count"] == ["1"]

"""The settings come in one class per concern, with the same FANOUT_* names; each process reads only the
concerns it uses, and FanoutSettings composes them all."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from fanout.core.settings import (
    FanoutSettings,
    ItemSettings,
    LocalStackSettings,
    ResumeSettings,
    RunnerSettings,
    SourceSettings,
    WebhookSettings,
    WorkerSettings,
    api_settings,
    flow_settings,
    stack_settings,
    worker_settings,
)

CONCERNS: list[type[BaseSettings]] = [
    ItemSettings,
    RunnerSettings,
    ResumeSettings,
    WorkerSettings,
    LocalStackSettings,
    WebhookSettings,
    SourceSettings,
]


def test_each_setting_belongs_to_one_concern() -> None:
    """The concerns split FanoutSettings' fields between them: none left out, none in two."""
    names = [name for concern in CONCERNS for name in concern.model_fields]
    assert sorted(names) == sorted(FanoutSettings.model_fields)


ONE_SETTING_EACH = [
    (ItemSettings, "max_parallel", 3),
    (RunnerSettings, "dask_workers", 3),
    (ResumeSettings, "max_auto_retries", 5),
    (LocalStackSettings, "worker_limit", 4),
    (WebhookSettings, "webhook_max_connections", 5),
    (SourceSettings, "max_item_bytes", 2048),
]


@pytest.mark.parametrize(("concern", "name", "value"), ONE_SETTING_EACH, ids=lambda value: str(value))
def test_a_concern_reads_the_same_variables(
    concern: type[BaseSettings], name: str, value: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A concern's class and FanoutSettings read a field from the same FANOUT_* variable."""
    assert concern.model_fields[name].get_default() != value
    monkeypatch.setenv(f"FANOUT_{name.upper()}", str(value))
    assert getattr(concern(_env_file=None), name) == getattr(FanoutSettings(_env_file=None), name) == value


def test_the_flow_concerns_ignore_the_webhook_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that reads only the flow's concerns starts with a placeholder webhook token it never uses."""
    monkeypatch.setenv("FANOUT_WEBHOOK_TOKEN", "changeme")
    for concern in (ItemSettings, RunnerSettings, ResumeSettings, SourceSettings):
        concern(_env_file=None)
    with pytest.raises(ValidationError, match="webhook_token must be a real secret"):
        WebhookSettings(_env_file=None)
    with pytest.raises(ValidationError, match="webhook_token must be a real secret"):
        FanoutSettings(_env_file=None)


def test_a_concern_keeps_its_own_rules() -> None:
    """A rule across fields stays with its concern: the crash window must span two heartbeats."""
    with pytest.raises(ValidationError, match="at least twice heartbeat_seconds"):
        ResumeSettings(_env_file=None, crash_after_seconds=60, heartbeat_seconds=60)
    with pytest.raises(ValidationError, match="at least twice heartbeat_seconds"):
        FanoutSettings(_env_file=None, crash_after_seconds=60, heartbeat_seconds=60)


def test_each_process_leaves_out_the_webhooks_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """A placeholder webhook token stops the webhook's settings only: the flow, the worker and the stack start."""
    monkeypatch.setenv("FANOUT_WEBHOOK_TOKEN", "changeme")
    for read in (flow_settings, worker_settings, stack_settings):
        read(_env_file=None)
    with pytest.raises(ValidationError, match="webhook_token must be a real secret"):
        api_settings(_env_file=None)


def test_the_webhook_leaves_out_the_workers_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker limit out of bounds stops the stack's settings, not the webhook's or the flow's."""
    monkeypatch.setenv("FANOUT_WORKER_LIMIT", "0")
    assert api_settings(_env_file=None).max_parallel == flow_settings(_env_file=None).max_parallel
    with pytest.raises(ValidationError, match="worker_limit"):
        stack_settings(_env_file=None)

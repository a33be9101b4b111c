"""The settings come in one class per concern, with the same FANOUT_* names; FanoutSettings composes them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from fanout.core.settings import (
    FanoutSettings,
    ItemSettings,
    ResumeSettings,
    RunnerSettings,
    SourceSettings,
    WebhookSettings,
    WorkerSettings,
)

CONCERNS: list[type[BaseSettings]] = [
    ItemSettings,
    RunnerSettings,
    ResumeSettings,
    WorkerSettings,
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
    (WorkerSettings, "worker_limit", 4),
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

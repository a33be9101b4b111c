"""Prefect settings changed for one block of code, without rebuilding them.

Prefect's `temporary_settings` validates a whole new `Settings` from the
environment and profiles on every call: 60 ms on this project's machines, a
sizeable part of a run that finds every item checkpointed. The current settings
are already valid, so a copy with the changed sections replaced is enough.
"""

from __future__ import annotations

from typing import Any

from prefect.context import SettingsContext


def overriding(**sections: dict[str, Any]) -> SettingsContext:
    """A settings context equal to the current one but for `sections`, e.g.
    `overriding(flows={"heartbeat_frequency": None})`; enter it to apply it."""
    current = SettingsContext.get()
    assert current is not None, "Prefect always has a settings context"
    settings = current.settings
    changed = {name: getattr(settings, name).model_copy(update=values) for name, values in sections.items()}
    return SettingsContext(profile=current.profile, settings=settings.model_copy(update=changed))


def heartbeats_off() -> SettingsContext:
    """No flow-run heartbeats: for runs in this process, which nothing restarts on a missed heartbeat."""
    return overriding(flows={"heartbeat_frequency": None})


def client_retries_off() -> SettingsContext:
    """No client-side retries: for callers whose own next attempt is the retry."""
    return overriding(client={"max_retries": 0})

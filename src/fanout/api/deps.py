"""What a webhook route needs, declared as FastAPI dependencies: the app's state, its settings, and the
instance operations (the token check is src/fanout/api/security.py).

Every dependency is `async def`, though none awaits: FastAPI runs a plain `def` dependency in a worker
thread, and those hand-offs would cost each request more than its own work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from fanout.api.state_changes import StateChanges
from fanout.core.settings import ApiSettings
from fanout.service.instances import Instances


@dataclass
class WebhookState:
    """Everything the routes share; `instances` is None until the app is connected to Prefect."""

    settings: ApiSettings
    token: str | None
    instances: Instances | None = None
    changes: StateChanges = field(default_factory=StateChanges)


async def webhook_state(request: Request) -> WebhookState:
    state: WebhookState = request.app.state.webhook
    return state


State = Annotated[WebhookState, Depends(webhook_state)]


async def settings(state: State) -> ApiSettings:
    return state.settings


async def instances(state: State) -> Instances:
    """The instance operations, or 503 while the app is not connected to Prefect yet."""
    if state.instances is None:
        raise HTTPException(503, "not connected to Prefect yet", headers={"Retry-After": "1"})
    return state.instances


async def state_changes(state: State) -> StateChanges:
    return state.changes


Settings = Annotated[ApiSettings, Depends(settings)]
Changes = Annotated[StateChanges, Depends(state_changes)]
InstancesDep = Annotated[Instances, Depends(instances)]

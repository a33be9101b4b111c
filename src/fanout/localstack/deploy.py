"""Register fanout's deployments from the installed package: what `fanout up` deploys.

`prefect deploy --all` reads prefect.yaml in a checkout's root and records a
pull step that changes into that checkout, so a stack deployed that way only
runs where the source tree is. `fanout up` must also work from `pip install`,
so it registers the same deployments through Prefect's Python deployment API
with a *module path* entrypoint (`fanout.seed.fan_out_fan_in`) and no pull
steps: a worker imports the flow from whatever `flows` package its Python has,
and the flow run works in the worker's folder (the one `fanout up` ran in).

`DEPLOYMENTS` repeats prefect.yaml's `deployments:` (but for the entrypoint,
which there is a file path); tests/unit/test_devstack_deploy.py keeps the two equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any
from uuid import UUID

WORK_POOL = "fanout"

SEED_DESCRIPTION = (
    "The seed's fan-out/fan-in: one `process_item` per item, checkpointed per item, gathered in order. "
    'Parameter `request`: {"count": N} or {"items": [...]}, plus an optional `instance_id` to resume an '
    "earlier instance."
)
HTTP_ENRICH_DESCRIPTION = (
    'JSONL in ({"id": ..., "url": ...} per line), one async GET per item, JSONL results. Parameter '
    '`request`: {"source": {"uri": "/path/items.jsonl"}, "item_key": "id"} or {"source": {"generator": '
    '"flows.http_enrich:urls", "params": {"n": 100}}, "item_key": "id"}. The local test service: '
    "python -m tests.support.echo_service --port 8765."
)
START_TRIGGER: dict[str, Any] = {
    "type": "event",
    "enabled": True,
    "match": {"prefect.resource.id": "fanout.*"},
    "expect": ["fanout.start"],
    "posture": "Reactive",
    "threshold": 1,
    "parameters": {"request": "{{ event.payload }}"},
}
"""Starts a run from an event whose payload is the request (`fanout.start` posted to `/api/events`)."""

DEPLOYMENTS: list[dict[str, Any]] = [
    {
        "name": "default",
        "description": SEED_DESCRIPTION,
        "tags": ["fanout"],
        "parameters": {},
        "work_pool": {"name": WORK_POOL, "work_queue_name": "default"},
        "triggers": [START_TRIGGER],
    },
    {
        "name": "http-enrich",
        "description": HTTP_ENRICH_DESCRIPTION,
        "tags": ["fanout", "pipeline"],
        "parameters": {},
        "work_pool": {
            "name": WORK_POOL,
            "work_queue_name": "default",
            "job_variables": {
                "env": {
                    "FANOUT_PROCESSOR": "flows.http_enrich:enrich",
                    "FANOUT_MAX_PARALLEL": "1000",
                    "FANOUT_SOURCES": "flows.http_enrich:urls",
                    "FANOUT_RETRIES": "2",
                }
            },
        },
    },
]


def runner_deployment(spec: dict[str, Any]) -> Any:
    """A Prefect `RunnerDeployment` of the flow for one entry of `DEPLOYMENTS`, entrypoint by module path."""
    from prefect.deployments.runner import RunnerDeployment
    from prefect.events.schemas.deployment_triggers import DeploymentTriggerTypes
    from prefect.types.entrypoint import EntrypointType
    from pydantic import TypeAdapter

    from fanout.seed import fan_out_fan_in

    triggers: list[Any] = TypeAdapter(list[DeploymentTriggerTypes]).validate_python(spec.get("triggers", []))
    pool = spec["work_pool"]
    return RunnerDeployment.from_flow(
        fan_out_fan_in,
        name=spec["name"],
        description=spec["description"],
        tags=spec["tags"],
        parameters=spec["parameters"],
        triggers=triggers,
        work_pool_name=pool["name"],
        work_queue_name=pool["work_queue_name"],
        job_variables=pool.get("job_variables", {}),
        entrypoint_type=EntrypointType.MODULE_PATH,
    )


def register_deployments() -> list[UUID]:
    """Create the `process` work pool if missing and (re)register every deployment; their ids.

    Talks to the Prefect API the current settings name (`PREFECT_API_URL`, `PREFECT_API_AUTH_STRING`).
    """
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
    ids: list[UUID] = []
    for spec in DEPLOYMENTS:
        applied = runner_deployment(spec).apply(work_pool_name=spec["work_pool"]["name"])
        ids.append(asyncio.run(applied) if inspect.iscoroutine(applied) else applied)  # sync or async by release
    return ids

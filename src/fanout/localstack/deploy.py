"""What `fanout up` deploys: the project's own `prefect.yaml`, else the seed from the installed package.

A project's `prefect.yaml` is deployed by `prefect deploy --all --no-prompt` itself; only its work pools
are read here, to create the missing ones and start a worker for each. Without one, the seed's deployment
is registered with a module-path entrypoint and no pull steps, so it works from `pip install` anywhere.
`DEPLOYMENTS` repeats the seed's entry of the repository's prefect.yaml; a unit test keeps the two equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import UUID

WORK_POOL = "fanout"
PROJECT_FILE = "prefect.yaml"
POOL_TYPE = "process"
"""The type of the pools created here: Prefect's `process` worker and fanout's warm worker both serve it."""

SEED_DESCRIPTION = (
    "The seed's fan-out/fan-in: one `process_item` per item, checkpointed per item, gathered in order. "
    'Parameter `request`: {"count": N} or {"items": [...]}, plus an optional `instance_id` to resume an '
    "earlier instance."
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
    ensure_pools([WORK_POOL])
    ids: list[UUID] = []
    for spec in DEPLOYMENTS:
        applied = runner_deployment(spec).apply(work_pool_name=spec["work_pool"]["name"])
        ids.append(asyncio.run(applied) if inspect.iscoroutine(applied) else applied)  # sync or async by release
    return ids


def ensure_pools(names: Iterable[str]) -> None:
    """Create each named work pool as a `process` pool unless it exists (of whatever type)."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists

    with get_client(sync_client=True) as client:
        for name in names:
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_work_pool(WorkPoolCreate(name=name, type=POOL_TYPE))


def project_file(folder: Path) -> Path | None:
    """The folder's `prefect.yaml`, when it is a Prefect project."""
    path = folder / PROJECT_FILE
    return path if path.is_file() else None


class BadProject(ValueError):
    """The project's prefect.yaml cannot be read, or names no deployment with a work pool."""


def project_pools(path: Path) -> list[str]:
    """The work pools the deployments of a prefect.yaml name, in order of first mention.

    `BadProject` when the file is not YAML, has no deployments, or a deployment names no
    work pool (`prefect deploy --no-prompt` would refuse it too).
    """
    import yaml  # type: ignore[import-untyped]  # PyYAML (a Prefect dependency) ships no type information

    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise BadProject(f"cannot read {path}: {error}") from None
    deployments = document.get("deployments") if isinstance(document, dict) else None
    if not isinstance(deployments, list) or not deployments:
        raise BadProject(f"{path} declares no deployments")
    pools: list[str] = []
    for deployment in deployments:
        pool = (deployment.get("work_pool") or {}).get("name") if isinstance(deployment, dict) else None
        if not isinstance(pool, str) or not pool:
            name = deployment.get("name") if isinstance(deployment, dict) else deployment
            raise BadProject(f"deployment {name!r} in {path} names no work pool (work_pool: name: ...)")
        if pool not in pools:
            pools.append(pool)
    return pools


def deploy_argv(python: str, names: Iterable[str] = ()) -> list[str]:
    """`prefect deploy` for every deployment of the project (or those `names`), without questions."""
    chosen = [argument for name in names for argument in ("--name", name)]
    return [python, "-m", "prefect", "deploy", *(chosen or ["--all"]), "--no-prompt"]

"""`fanout serve`: register the flow's deployment and run a warm worker for it in this process.

It registers `fan-out-fan-in/<name>` on the `fanout` work pool, with a module-path entrypoint as
`fanout up`'s deployments have, and runs a `fanout-warm` worker on that queue until Ctrl-C. Its flow runs
get the environment `fanout up` gives its workers, so they checkpoint where `fanout up`'s do.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from typing import Any

SERVE_DEPLOYMENT = "serve"
WORK_POOL = "fanout"


async def register(name: str) -> str:
    """Create the pool if missing and (re)register `fan-out-fan-in/<name>` on it; returns the deployment id."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.deployments.runner import RunnerDeployment
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.types.entrypoint import EntrypointType

    from fanout.seed import fan_out_fan_in

    async with get_client() as client:
        with contextlib.suppress(ObjectAlreadyExists):
            await client.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
    deployment = RunnerDeployment.from_flow(
        fan_out_fan_in,
        name=name,
        work_pool_name=WORK_POOL,
        work_queue_name=name,
        tags=["fanout"],
        entrypoint_type=EntrypointType.MODULE_PATH,
    )
    applied: Any = deployment.apply(work_pool_name=WORK_POOL)  # a coroutine here: we are in async code
    return str(await applied if inspect.isawaitable(applied) else applied)


async def serve(name: str = SERVE_DEPLOYMENT, limit: int | None = None) -> None:
    """Register the deployment, then run a warm worker on its queue until cancelled."""
    from fanout.core.settings import worker_settings
    from fanout.service.automations import worker_environment
    from fanout.storage.checkpoints import storage_environment
    from fanout.worker.warm_worker import FanoutWarmWorker

    settings = worker_settings()
    os.environ.update({**worker_environment(settings), **storage_environment(settings)})  # its forks inherit them
    await register(name)
    worker = FanoutWarmWorker(work_pool_name=WORK_POOL, work_queues=[name], name=f"serve-{name}", limit=limit)
    print(f"Serving fan-out-fan-in/{name} with a warm worker on pool {WORK_POOL!r}, queue {name!r}; Ctrl-C stops.")
    await worker.start()


def main(name: str = SERVE_DEPLOYMENT, limit: int | None = None) -> None:
    """`fanout serve`: serve until Ctrl-C."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(name, limit))


if __name__ == "__main__":
    main()

"""Serve the flow from this process with the warm worker: `fanout serve` (or `python -m fanout.cli.serve`).

It registers the deployment `fan-out-fan-in/<name>` on the `fanout` work pool
(created as a `process` pool when missing), on a work queue of the same name,
and runs a `fanout-warm` worker for that queue in this process until Ctrl-C
(src/fanout/worker/warm_worker.py): no separate worker to start, and each flow run
starts in a pre-imported process. Runs created while it is stopped wait,
Scheduled, for the next `fanout serve` (or any worker on the queue). Its flow
runs get the worker environment `fanout up` gives its workers (heartbeats, and
FANOUT_RESULT_STORAGE made absolute here: `.fanout/storage` by default), so
they checkpoint where `fanout up`'s worker and webhook do. A webhook finds its
runs by flow-run id whatever its FANOUT_DEPLOYMENT_NAME.

The deployment names the flow by module path (`fanout.seed.fan_out_fan_in`)
with no pull step, as `fanout up`'s do (src/fanout/localstack/deploy.py): runs import the
flow from the installed package and work in the folder `fanout serve` runs in,
never in site-packages or a checkout.
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

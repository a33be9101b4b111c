"""What the warm worker spares the server on each run: no Submitting state, no worker events, no reads of what it
already knows."""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

import pytest
from prefect.client.schemas.objects import FlowRun, WorkPool, WorkQueue

from fanout.worker.warm_worker import FanoutWarmWorker, WarmJobConfiguration, reuse_recent_reads


class NoCalls:
    """A client that fails the test on any call."""

    def __getattr__(self, name: str) -> Any:
        async def call(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"the worker called {name}")

        return call


@pytest.fixture
def worker() -> FanoutWarmWorker:
    """A warm worker of the `fanout` pool, not started, whose client fails on any call."""
    worker = FanoutWarmWorker(work_pool_name="fanout")
    worker._client = NoCalls()  # type: ignore[assignment]
    worker._work_pool = WorkPool(id=uuid4(), name="fanout", type="fanout-warm")
    return worker


def a_run(queue: str | None = "default") -> FlowRun:
    return FlowRun(
        id=uuid4(), flow_id=uuid4(), name="run", work_pool_name="fanout", work_queue_id=uuid4(), work_queue_name=queue
    )


def test_a_run_goes_from_pending_to_running_without_a_submitting_state(worker: FanoutWarmWorker) -> None:
    """The worker proposes no Submitting state (its process starts at once): no request at all."""
    asyncio.run(worker._propose_submitting_state(a_run()))


def test_a_run_s_submission_emits_no_worker_event(worker: FanoutWarmWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker emits no `submitted-flow-run` event for a run it takes (and so no `executed-flow-run`)."""
    import prefect.workers.base

    emitted: list[object] = []
    monkeypatch.setattr(prefect.workers.base, "emit_event", lambda *args, **kwargs: emitted.append((args, kwargs)))
    configuration = WarmJobConfiguration()
    assert worker._emit_flow_run_submitted_event(configuration) is None
    assert emitted == []


def test_a_run_s_process_is_handed_its_work_pool_and_queue(worker: FanoutWarmWorker) -> None:
    """The pool the worker serves and the run's queue go to the run's process, for its events to relate to."""
    run = a_run()
    related = worker._pool_related(run)
    assert WorkPool.model_validate_json(related["work-pool"]).name == "fanout"
    queue = WorkQueue.model_validate_json(related["work-queue"])
    assert (queue.id, queue.name) == (run.work_queue_id, "default")


def test_a_run_without_its_queue_s_name_is_handed_no_queue(worker: FanoutWarmWorker) -> None:
    """Without the queue's name the run's process reads the queue as Prefect would; the pool still goes."""
    related = worker._pool_related(a_run(queue=None))
    assert "work-queue" not in related and "work-pool" in related


class CountingReads:
    """A client whose deployment and flow reads count how often they reached the server."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, object]] = []

    async def read_deployment(self, deployment_id: object) -> object:
        self.reads.append(("deployment", deployment_id))
        return {"deployment": deployment_id}

    async def read_flow(self, flow_id: object) -> object:
        self.reads.append(("flow", flow_id))
        return {"flow": flow_id}


def reads_after(times: list[float], ids: list[object]) -> list[tuple[str, object]]:
    """The reads that reached the server when the deployment of each id is read at each time (5 s reuse)."""
    client, clock = CountingReads(), iter(times)
    reuse_recent_reads(client, 5.0, clock=lambda: next(clock))

    async def read_all() -> None:
        for deployment_id in ids:
            await client.read_deployment(deployment_id)  # type: ignore[arg-type]

    asyncio.run(read_all())
    return client.reads


def test_a_deployment_read_twice_within_seconds_is_read_from_the_server_once() -> None:
    """Prefect's worker reads a run's deployment twice as it submits it: the second read is the first's answer."""
    assert reads_after([0.0, 0.1], ["d", "d"]) == [("deployment", "d")]


def test_a_deployment_is_read_again_once_the_reuse_window_passed() -> None:
    """A read older than the window is not reused: a changed deployment is seen within seconds."""
    assert reads_after([0.0, 6.0], ["d", "d"]) == [("deployment", "d"), ("deployment", "d")]


def test_each_deployment_is_reused_only_for_itself() -> None:
    """Reads of another deployment reach the server."""
    assert reads_after([0.0, 0.1], ["d", "e"]) == [("deployment", "d"), ("deployment", "e")]


def polled_body(worker: FanoutWarmWorker, slots: int, taken: int) -> dict[str, Any]:
    """The body of the warm worker's poll of its pool with `taken` of its `slots` in use (the server answers no run)."""
    import anyio
    import httpx

    sent: list[dict[str, Any]] = []

    async def request(method: str, route: str, path_params: dict[str, str], json: dict[str, Any]) -> httpx.Response:
        assert (method, route, path_params) == (
            "POST",
            "/work_pools/{name}/get_scheduled_flow_runs",
            {"name": "fanout"},
        )
        sent.append(json)
        return httpx.Response(200, json=[])

    async def poll() -> list[Any]:
        worker._limiter = anyio.CapacityLimiter(slots)
        for _ in range(taken):
            worker._limiter.acquire_on_behalf_of_nowait(object())
        return await worker._get_scheduled_flow_runs()

    worker._client.request = request  # type: ignore[union-attr]
    assert asyncio.run(poll()) == []
    return sent[0]


def test_a_poll_asks_for_as_many_runs_as_free_slots_and_one_more(worker: FanoutWarmWorker) -> None:
    """With 10 slots and 7 runs in progress the poll asks for 4 scheduled runs: 3 to start, 1 to see a backlog."""
    assert polled_body(worker, slots=10, taken=7)["limit"] == 4


def test_a_full_worker_polls_for_one_run(worker: FanoutWarmWorker) -> None:
    """Every slot taken: one run is asked for, which tells a backlog from an empty pool."""
    assert polled_body(worker, slots=2, taken=2)["limit"] == 1


def test_a_run_s_worker_labels_are_sent_beside_its_start_not_before_it(worker: FanoutWarmWorker) -> None:
    """The labels naming the worker go to the run in the background: the hook returns before they are sent."""
    sent: list[object] = []

    class LabelsClient:
        async def update_flow_run_labels(self, flow_run_id: object, labels: dict[str, str]) -> None:
            await asyncio.sleep(0.05)
            sent.append((flow_run_id, labels["prefect.worker.name"]))

    async def label_one() -> list[object]:
        import anyio

        worker._client = LabelsClient()  # type: ignore[assignment]
        run_id = uuid4()
        async with anyio.create_task_group() as services:
            worker._services = services
            await worker._give_worker_labels_to_flow_run(run_id)
            assert sent == []
        return [(run_id, worker.name)]

    assert asyncio.run(label_one()) == sent

"""What the warm worker spares the server and the run's start on each run: no Submitting state, no worker events,
no reads of what it already knows or is already reading, no settings computed again."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import uuid4

import pytest
from prefect.client.schemas.objects import FlowRun, WorkPool, WorkQueue
from prefect.events import Event
from prefect.settings import PREFECT_API_URL, get_current_settings, temporary_settings

from fanout.worker.warm_worker import (
    FanoutWarmWorker,
    SettingsEnvironment,
    WarmJobConfiguration,
    related_ids,
    reuse_recent_reads,
)


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
    """A client whose deployment and flow reads count how often they reached the server; each read takes
    `seconds`, and the first `failures` fail."""

    def __init__(self, seconds: float = 0.0, failures: int = 0) -> None:
        self.reads: list[tuple[str, object]] = []
        self.seconds = seconds
        self.failures = failures

    async def read_deployment(self, deployment_id: object) -> object:
        return await self._read("deployment", deployment_id)

    async def read_flow(self, flow_id: object) -> object:
        return await self._read("flow", flow_id)

    async def _read(self, kind: str, object_id: object) -> object:
        self.reads.append((kind, object_id))
        await asyncio.sleep(self.seconds)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the server did not answer")
        return {kind: object_id, "job_variables": {"env": {}}}


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


def test_a_read_still_on_its_way_is_shared_with_a_second_reader() -> None:
    """A deployment read while the same read is on its way waits for that read: the server answers once."""
    client = CountingReads(seconds=0.05)
    reuse_recent_reads(client, 5.0)

    async def two_readers() -> list[object]:
        return list(await asyncio.gather(client.read_deployment("d"), client.read_deployment("d")))

    first, second = asyncio.run(two_readers())
    assert client.reads == [("deployment", "d")]
    assert first == second


def test_a_failed_read_is_not_reused() -> None:
    """A read that failed is made again by the next reader, who gets the deployment."""
    client = CountingReads(failures=1)
    reuse_recent_reads(client, 5.0)

    async def read_twice() -> object:
        with pytest.raises(ConnectionError):
            await client.read_deployment("d")
        return await client.read_deployment("d")

    assert asyncio.run(read_twice()) == {"deployment": "d", "job_variables": {"env": {}}}
    assert client.reads == [("deployment", "d"), ("deployment", "d")]


def test_each_reader_gets_a_copy_of_its_own() -> None:
    """A reader that changes what it got (Prefect's worker merges a run's env into its deployment's) changes
    nothing for the next reader."""
    client = CountingReads()
    reuse_recent_reads(client, 5.0)

    async def change_then_read() -> Any:
        first: Any = await client.read_deployment("d")
        first["job_variables"]["env"]["RUN_ONLY"] = "1"
        return await client.read_deployment("d")

    assert asyncio.run(change_then_read())["job_variables"] == {"env": {}}


def state_event(pool: str, deployment_id: object, flow_id: object) -> Event:
    """A `prefect.flow-run.Scheduled` event as the server relates it: the run's flow, deployment, queue and pool."""
    related = [
        {"prefect.resource.id": f"prefect.flow.{flow_id}", "prefect.resource.role": "flow"},
        {"prefect.resource.id": f"prefect.deployment.{deployment_id}", "prefect.resource.role": "deployment"},
        {"prefect.resource.id": f"prefect.work-queue.{uuid4()}", "prefect.resource.role": "work-queue"},
        {
            "prefect.resource.id": f"prefect.work-pool.{uuid4()}",
            "prefect.resource.role": "work-pool",
            "prefect.resource.name": pool,
        },
    ]
    return Event(
        event="prefect.flow-run.Scheduled",
        resource={"prefect.resource.id": f"prefect.flow-run.{uuid4()}"},
        related=related,
    )


def test_a_scheduled_run_of_the_pool_names_its_deployment_and_flow() -> None:
    """The deployment and flow of a run scheduled in the worker's pool are read from its state event."""
    deployment_id, flow_id = uuid4(), uuid4()
    assert related_ids(state_event("fanout", deployment_id, flow_id), "fanout") == {
        "deployment": deployment_id,
        "flow": flow_id,
    }


def test_a_run_of_another_pool_names_nothing() -> None:
    """A run scheduled in another pool is no business of this worker: nothing is read ahead for it."""
    assert related_ids(state_event("other", uuid4(), uuid4()), "fanout") == {}


def test_the_reads_of_a_submission_are_made_while_its_poll_is_on_its_way(worker: FanoutWarmWorker) -> None:
    """The worker reads the deployment and flow an event names as the event arrives; the submission's reads,
    made after its poll, are those reads: the server answers each once."""
    import anyio

    client = CountingReads(seconds=0.05)
    reuse_recent_reads(client, 5.0)
    worker._client = client  # type: ignore[assignment]
    deployment_id, flow_id = uuid4(), uuid4()

    async def event_then_submission() -> None:
        async with anyio.create_task_group() as services:
            worker._services = services
            worker._read_ahead(state_event("fanout", deployment_id, flow_id))
            await asyncio.sleep(0.01)  # the poll, on its way
            assert len(client.reads) == 2
            await client.read_deployment(deployment_id)
            await client.read_flow(flow_id)

    asyncio.run(event_then_submission())
    assert sorted(kind for kind, _ in client.reads) == ["deployment", "flow"]


def test_prefect_s_settings_go_to_a_run_as_prefect_gives_them() -> None:
    """A run's job configuration carries Prefect's settings as the environment variables Prefect computes."""
    assert WarmJobConfiguration._base_environment() == get_current_settings().to_environment_variables(
        exclude_unset=True
    )


def test_the_settings_variables_are_computed_once_while_the_same_settings_are_in_force(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every run after the first takes the variables computed for the first: the settings did not change."""
    settings_class = type(get_current_settings())
    computed: list[object] = []
    prefects_own = settings_class.to_environment_variables

    def counted(self: Any, *args: Any, **kwargs: Any) -> dict[str, str]:
        computed.append(self)
        return prefects_own(self, *args, **kwargs)

    monkeypatch.setattr(settings_class, "to_environment_variables", counted)
    environment = SettingsEnvironment()
    first = environment()
    first["CHANGED_BY_ITS_CALLER"] = "1"
    assert environment() == prefects_own(get_current_settings(), exclude_unset=True)
    assert len(computed) == 1


def test_other_settings_in_force_give_their_own_variables() -> None:
    """Under other settings (a new settings object) the variables are computed again, from those settings."""
    environment = SettingsEnvironment()
    environment()
    with temporary_settings(updates={PREFECT_API_URL: "http://127.0.0.1:9/api"}):
        assert environment()["PREFECT_API_URL"] == "http://127.0.0.1:9/api"


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


def test_a_run_s_worker_labels_are_sent_after_its_start_not_before_it(
    worker: FanoutWarmWorker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The labels naming the worker go to the run in the background, a moment after its start: the hook returns
    before they are sent, and they are not sent before the moment has passed."""
    import fanout.worker.warm_worker

    monkeypatch.setattr(fanout.worker.warm_worker, "LABELS_AFTER_SECONDS", 0.1)
    sent: list[object] = []
    sent_at: list[float] = []

    class LabelsClient:
        async def update_flow_run_labels(self, flow_run_id: object, labels: dict[str, str]) -> None:
            sent_at.append(time.monotonic())
            await asyncio.sleep(0.05)
            sent.append((flow_run_id, labels["prefect.worker.name"]))

    async def label_one() -> list[object]:
        import anyio

        worker._client = LabelsClient()  # type: ignore[assignment]
        run_id = uuid4()
        async with anyio.create_task_group() as services:
            worker._services = services
            started = time.monotonic()
            await worker._give_worker_labels_to_flow_run(run_id)
            assert sent == []
        assert sent_at[0] - started >= 0.1
        return [(run_id, worker.name)]

    assert asyncio.run(label_one()) == sent

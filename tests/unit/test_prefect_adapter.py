"""Each assumption src/fanout/core/prefect_adapter.py makes about Prefect holds for the installed release."""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import prefect
import prefect.flow_engine
import pytest
from packaging.version import Version
from prefect.client.orchestration import SyncPrefectClient
from prefect.events import Event
from prefect.exceptions import PrefectHTTPStatusError
from prefect.filesystems import LocalFileSystem
from prefect.results import ResultRecordMetadata
from prefect.serializers import JSONSerializer
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_RESULTS_LOCAL_STORAGE_PATH,
    get_current_settings,
    temporary_settings,
)
from prefect.states import Completed

from fanout.core import prefect_adapter
from fanout.core.prefect_adapter import flow_run_id_of, persisted_result_file

_VERSION_CHECK = getattr(prefect.settings, "PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED", None)
NO_VERSION_CHECK = {_VERSION_CHECK: False} if _VERSION_CHECK is not None else {}
"""Turns off a client's API version check on entering it (a Prefect without the setting makes no such check)."""
NO_VERSION_CHECK_OFF = {_VERSION_CHECK: True} if _VERSION_CHECK is not None else {}
"""Leaves Prefect's API version checks on, whatever the environment says."""
SENDS_HEARTBEATS_FROM_THE_ENGINE = pytest.mark.skipif(
    not hasattr(prefect.flow_engine, "_send_heartbeats"), reason="this Prefect's engine sends no flow-run heartbeats"
)
OBSERVES_SUSPENSIONS = pytest.mark.skipif(
    not hasattr(prefect.flow_engine, "observe_flow_run_suspension"),
    reason="this Prefect's engine opens no suspension observer",
)


class FakeApi:
    """An in-process Prefect API: records every request, answers with `status` (and an id)."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/csrf-token"):  # the client asks for one before its first write
            expiration = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
            return httpx.Response(200, json={"token": "t", "client": "c", "expiration": expiration})
        self.requests.append(request)
        return httpx.Response(self.status, json={"id": str(uuid4())}, headers={"Retry-After": "0"})


@pytest.fixture
def api() -> FakeApi:
    """A fake API that answers 200."""
    return FakeApi()


@pytest.fixture
def client(api: FakeApi) -> Iterator[SyncPrefectClient]:
    """A Prefect sync client whose requests go to `api`, not over the network."""
    with SyncPrefectClient("http://prefect.test/api", httpx_settings={"transport": httpx.MockTransport(api)}) as client:
        yield client


def counting_tls_contexts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The TLS contexts `ssl.create_default_context` makes from now on (the CA bundle loaded each time)."""
    made: list[object] = []
    real = ssl.create_default_context

    def counted(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        made.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counted)
    return made


def test_a_plain_http_api_gets_a_tls_context_that_trusts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """For an http:// API the shared context loads no CA bundle, and still verifies: it trusts no certificate."""
    made = counting_tls_contexts(monkeypatch)
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api"}):
        context = prefect_adapter.api_tls_context()
    assert made == []
    assert (context.verify_mode, context.check_hostname, context.get_ca_certs()) == (ssl.CERT_REQUIRED, True, [])


def test_an_https_api_gets_the_ca_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    """For an https:// API the shared context trusts what Prefect's own client would (certifi's bundle)."""
    with temporary_settings({PREFECT_API_URL: "https://prefect.example/api"}):
        context = prefect_adapter.api_tls_context()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.cert_store_stats()["x509_ca"] > 0


@pytest.mark.skipif(
    _VERSION_CHECK is None, reason="this Prefect's client checks the API version with no setting to skip it"
)
def test_prefect_hands_the_shared_tls_client_to_every_caller_inside(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inside `shared_tls_clients()`, `get_client(sync_client=True)` returns its one client, which made no TLS context."""
    from prefect.client.orchestration import get_client

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:4200/api", **NO_VERSION_CHECK}):
        made = counting_tls_contexts(monkeypatch)
        with prefect_adapter.shared_tls_clients() as clients:
            assert get_client(sync_client=True) is clients.client
            assert get_client(sync_client=True) is clients.client
    assert made == []


def test_a_poll_of_a_plain_http_url_reuses_one_context_that_trusts_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """`tls_context_for` an http:// URL loads no CA bundle and hands out one context; an https:// URL gets the bundle."""
    made = counting_tls_contexts(monkeypatch)
    plain = prefect_adapter.tls_context_for("http://127.0.0.1:4200/api/health")
    assert prefect_adapter.tls_context_for("http://127.0.0.1:8000/health") is plain
    assert made == [] and plain.get_ca_certs() == [] and plain.verify_mode == ssl.CERT_REQUIRED
    assert prefect_adapter.tls_context_for("https://prefect.example/api").cert_store_stats()["x509_ca"] > 0


def test_a_client_handed_a_tls_context_makes_none_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """`api_tls_context()` is made once; a client given it as `verify` loads no CA bundle of its own."""
    shared = prefect_adapter.api_tls_context()
    made = counting_tls_contexts(monkeypatch)
    with SyncPrefectClient("http://prefect.test/api", httpx_settings={"verify": shared}):
        pass
    assert prefect_adapter.api_tls_context() is shared
    assert made == []


def test_overriding_changes_the_named_setting_while_entered() -> None:
    """A copied settings context with one section changed is what Prefect reads while it is entered."""
    before = get_current_settings()
    with prefect_adapter.overriding(client={"max_retries": 0}):
        inside = get_current_settings()
        assert inside.client.max_retries == 0
        assert inside.api.url == before.api.url
    assert get_current_settings().client.max_retries == before.client.max_retries


def test_flow_heartbeats_are_detected_from_prefect_3_6_on() -> None:
    """Prefect sends flow-run heartbeats from the flow from 3.6 on, and the adapter knows whether it does."""
    assert prefect_adapter.has_flow_heartbeats() == (Version(prefect.__version__) >= Version("3.6"))


def test_heartbeats_off_clears_the_heartbeat_setting() -> None:
    """`heartbeats_off` leaves Prefect no heartbeat interval (where it has one to leave)."""
    with prefect_adapter.heartbeats_off():
        flows = getattr(get_current_settings(), "flows", None)
        assert flows is None or getattr(flows, "heartbeat_frequency", None) is None


def test_the_flow_engine_reads_the_heartbeat_setting_when_a_flow_starts() -> None:
    """Prefect's flow engine looks the heartbeat interval up in the current settings, so an override applies."""
    if not prefect_adapter.has_flow_heartbeats():
        pytest.skip("this Prefect sends no flow-run heartbeats")
    assert "get_current_settings().flows.heartbeat_frequency" in inspect.getsource(prefect.flow_engine)


def test_client_retries_off_makes_one_attempt_at_a_503(client: SyncPrefectClient, api: FakeApi) -> None:
    """With client retries off, a 503 fails the request after one attempt."""
    api.status = 503
    with prefect_adapter.client_retries_off(), pytest.raises(PrefectHTTPStatusError):
        client.update_flow_run_labels(uuid4(), {"fanout.total": 1})
    assert len(api.requests) == 1


def test_without_the_override_the_client_retries_a_503(client: SyncPrefectClient, api: FakeApi) -> None:
    """The contrast: the same request is retried as `client.max_retries` says (so the override is what stops it)."""
    api.status = 503
    with prefect_adapter.overriding(client={"max_retries": 2}), pytest.raises(PrefectHTTPStatusError):
        client.update_flow_run_labels(uuid4(), {"fanout.total": 1})
    assert len(api.requests) == 3


def test_a_progress_artifact_is_created_with_one_post(client: SyncPrefectClient, api: FakeApi) -> None:
    """Creating the progress artifact is one POST /artifacts/ carrying key, type, data and flow run; its id comes back."""
    run_id = uuid4()
    artifact_id = prefect_adapter.create_progress_artifact(
        client, key="fanout-progress", flow_run_id=run_id, percent=40.0, description="2 of 5 items done, 0 failed"
    )
    [request] = api.requests
    assert (request.method, request.url.path) == ("POST", "/api/artifacts/")
    body = json.loads(request.content)
    assert body == {
        "key": "fanout-progress",
        "type": "progress",
        "description": "2 of 5 items done, 0 failed",
        "data": 40.0,
        "flow_run_id": str(run_id),
    }
    assert isinstance(artifact_id, UUID)


def test_a_progress_artifact_is_updated_with_one_patch(client: SyncPrefectClient, api: FakeApi) -> None:
    """Updating it is one PATCH /artifacts/{id} with the new percentage and description."""
    artifact_id = uuid4()
    prefect_adapter.update_progress_artifact(
        client, artifact_id, percent=100.0, description="5 of 5 items done, 0 failed"
    )
    [request] = api.requests
    assert (request.method, request.url.path) == ("PATCH", f"/api/artifacts/{artifact_id}")
    assert json.loads(request.content) == {"data": 100.0, "description": "5 of 5 items done, 0 failed"}


class AsyncStorage:
    """A storage block whose read_path / write_path are coroutines, as remote blocks' are in async code."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    async def read_path(self, path: str) -> bytes:
        return self.files[path]

    async def write_path(self, path: str, content: bytes) -> str:
        self.files[path] = content
        return path


def test_a_local_block_is_written_and_read_back(tmp_path: Path) -> None:
    """Bytes written through a LocalFileSystem block read back the same."""
    storage = LocalFileSystem(basepath=str(tmp_path))
    prefect_adapter.write_block_path(storage, "instance/item", b"{}\n")
    assert prefect_adapter.read_block_path(storage, "instance/item") == b"{}\n"


def test_a_local_blocks_resolve_path_is_where_its_write_path_writes(tmp_path: Path) -> None:
    """`LocalFileSystem._resolve_path` names the file its own `write_path` writes, and the owner-only write
    refuses a path escaping the base path: it goes where Prefect's would, and nowhere else."""
    storage = LocalFileSystem(basepath=str(tmp_path / "base"))
    written = storage.write_path("instance/item", b"x")
    assert Path(str(written)) == storage._resolve_path("instance/item")
    with pytest.raises(ValueError, match="outside of the base path"):
        prefect_adapter.write_block_path(storage, "../elsewhere", b"x")
    assert not (tmp_path / "elsewhere").exists()


def test_an_async_block_is_written_and_read_back_from_sync_code() -> None:
    """A block whose methods are coroutines is driven to completion from sync code."""
    storage = AsyncStorage()
    prefect_adapter.write_block_path(storage, "instance/item", b"{}\n")  # type: ignore[arg-type]
    assert storage.files == {"instance/item": b"{}\n"}
    assert prefect_adapter.read_block_path(storage, "instance/item") == b"{}\n"  # type: ignore[arg-type]


def test_a_result_file_outside_local_result_storage_is_never_named(tmp_path: Path) -> None:
    """A state whose metadata points elsewhere (as any API client could write) names no file to delete."""
    elsewhere = tmp_path / "precious"
    elsewhere.write_text("keep me")
    metadata = ResultRecordMetadata(storage_key=str(elsewhere), serializer=JSONSerializer())
    with temporary_settings({PREFECT_RESULTS_LOCAL_STORAGE_PATH: str(tmp_path / "storage")}):
        assert persisted_result_file(Completed(data=metadata)) is None


def test_send_queued_returns_once_a_queue_service_handled_its_items(monkeypatch: pytest.MonkeyPatch) -> None:
    """Prefect's queue services are registered where `send_queued` looks, and it waits until they handled what they queued."""
    from prefect._internal.concurrency.services import QueueService, _QueueServiceBase

    monkeypatch.setattr(_QueueServiceBase, "_instances", {})  # only this test's service, not other tests' senders

    handled: list[int] = []

    class SlowSender(QueueService[int]):
        async def _handle(self, item: int) -> None:
            await asyncio.sleep(0.02)
            handled.append(item)

    sender = SlowSender.instance()
    try:
        for item in range(5):
            sender.send(item)
        assert prefect_adapter.send_queued(timeout=10)
        assert handled == [0, 1, 2, 3, 4]
    finally:
        sender.drain()


def test_send_queued_stops_a_sender_only_once_its_queue_is_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sender stopped with items still queued logs nothing: `send_queued` lets the queue empty first
    (Prefect 3.4 warns "Still processing items" when stopped with a backlog)."""
    from prefect._internal.concurrency.services import QueueService, _QueueServiceBase

    monkeypatch.setattr(_QueueServiceBase, "_instances", {})

    class SlowSender(QueueService[int]):
        async def _handle(self, item: int) -> None:
            await asyncio.sleep(0.02)

    sender = SlowSender.instance()
    warnings: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = warnings.append  # type: ignore[method-assign]
    sender._logger.addHandler(handler)
    try:
        for item in range(10):
            sender.send(item)
        assert prefect_adapter.send_queued(timeout=10)
        assert [record.getMessage() for record in warnings] == []
    finally:
        sender._logger.removeHandler(handler)
        sender.drain()


def test_send_queued_returns_once_a_batched_service_sent_its_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batched sender (Prefect's API log worker) has sent its partial batch when `send_queued` returns, within
    its timeout: such a sender never marks its items done, so its queue's own wait would last the timeout."""
    from prefect._internal.concurrency.services import BatchedQueueService, _QueueServiceBase

    monkeypatch.setattr(_QueueServiceBase, "_instances", {})

    batches: list[list[int]] = []

    class BatchSender(BatchedQueueService[int]):
        _max_batch_size = 100
        _min_interval = 0.05

        async def _handle_batch(self, items: list[int]) -> None:
            batches.append(items)

    sender = BatchSender.instance()
    try:
        for item in range(3):
            sender.send(item)
        assert prefect_adapter.send_queued(timeout=10)
        assert [item for batch in batches for item in batch] == [0, 1, 2]
    finally:
        sender.drain()


class NoReads:
    """A client that fails the test on any read (what the remembered objects must spare)."""

    def __getattr__(self, name: str) -> Any:
        async def read(*args: object) -> None:
            raise AssertionError(f"the client was asked to {name}")

        return read


def test_remembered_related_objects_are_what_a_run_s_events_relate_to_without_a_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The flow, deployment, work queue and work pool remembered for a run are found in Prefect's cache where
    its events look them up, so its first event reads none of them."""
    from prefect.client.schemas.objects import Flow, FlowRun, WorkPool, WorkQueue
    from prefect.client.schemas.responses import DeploymentResponse
    from prefect.context import FlowRunContext
    from prefect.events import related

    flow = Flow(id=uuid4(), name="fan-out-fan-in", tags=["fanout"])
    deployment = DeploymentResponse(id=uuid4(), name="default", flow_id=flow.id)
    pool = WorkPool(id=uuid4(), name="fanout", type="process")
    queue = WorkQueue(id=uuid4(), name="default", work_pool_id=pool.id)
    flow_run = FlowRun(
        id=uuid4(),
        flow_id=flow.id,
        name="run",
        deployment_id=deployment.id,
        work_queue_id=queue.id,
        work_queue_name=queue.name,
        work_pool_name=pool.name,
    )
    monkeypatch.setattr(related, "RESOURCE_CACHE", {})
    monkeypatch.setattr(FlowRunContext, "get", classmethod(lambda cls: type("Context", (), {"flow_run": flow_run})()))
    prefect_adapter.remember_related(prefect_adapter.related_objects(flow, deployment, queue, pool))
    found = asyncio.run(related.related_resources_from_run_context(NoReads()))  # type: ignore[arg-type]
    ids = {resource.id: resource.role for resource in found}
    assert ids[f"prefect.deployment.{deployment.id}"] == "deployment"
    assert ids[f"prefect.flow.{flow.id}"] == "flow"
    assert ids[f"prefect.work-queue.{queue.id}"] == "work-queue"
    assert ids[f"prefect.work-pool.{pool.id}"] == "work-pool"
    assert ids["prefect.tag.fanout"] == "tag"


def test_prefect_s_worker_still_proposes_submitting_through_the_hook_the_warm_worker_overrides() -> None:
    """BaseWorker proposes Submitting through `_propose_submitting_state`, the method the warm worker
    overrides to skip that state."""
    from prefect.workers.base import BaseWorker

    if "Submitting" not in inspect.getsource(BaseWorker):
        pytest.skip("this Prefect's worker proposes no Submitting state")
    assert "self._propose_submitting_state(" in inspect.getsource(BaseWorker._submit_run_and_capture_errors)


def test_prefect_s_worker_emits_its_executed_event_only_after_a_submitted_event_from_the_overridden_hook() -> None:
    """BaseWorker emits `submitted-flow-run` through `_emit_flow_run_submitted_event`, which the warm worker
    overrides, and `executed-flow-run` only when that returned an event."""
    from prefect.workers.base import BaseWorker

    source = inspect.getsource(BaseWorker._submit_run_and_capture_errors)
    assert "submitted_event = self._emit_flow_run_submitted_event(" in source
    assert "if submitted_event:" in source.split("self._emit_flow_run_executed_event(")[0]


def test_skipping_server_version_checks_turns_off_prefect_s_setting_process_wide(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After `skip_server_version_checks` the settings Prefect's clients read (in any thread) say not to check."""
    import prefect.context

    client_settings = get_current_settings().client
    if "server_version_check_enabled" not in type(client_settings).model_fields:
        pytest.skip("this Prefect has no setting for its server version check")
    monkeypatch.setattr(prefect.context, "GLOBAL_SETTINGS_CONTEXT", prefect.context.GLOBAL_SETTINGS_CONTEXT)
    prefect_adapter.skip_server_version_checks()
    assert prefect.context.GLOBAL_SETTINGS_CONTEXT.settings.client.server_version_check_enabled is False
    assert prefect.context.GLOBAL_SETTINGS_CONTEXT.settings.api.url == get_current_settings().api.url


def test_prefect_s_clients_read_the_version_check_setting_from_the_current_settings() -> None:
    """Prefect's HTTP client context and its websocket clients consult the setting the adapter turns off."""
    import prefect.context

    if "server_version_check_enabled" not in type(get_current_settings().client).model_fields:
        pytest.skip("this Prefect has no setting for its server version check")
    from prefect._internal import version_checking

    assert "server_version_check_enabled" in inspect.getsource(prefect.context.SyncClientContext.__enter__)
    assert "server_version_check_enabled" in inspect.getsource(version_checking.check_server_version)


@OBSERVES_SUSPENSIONS
def test_prefect_s_engine_observes_a_run_s_suspension_through_the_name_the_open_observer_replaces() -> None:
    """The flow engine opens its suspension observer by calling `observe_flow_run_suspension` from its own
    module, the name `OpenSuspensionObserver.install` replaces."""
    import prefect.flow_engine
    from prefect.flow_engine import FlowRunEngine

    assert callable(prefect.flow_engine.observe_flow_run_suspension)
    assert "observe_flow_run_suspension(" in inspect.getsource(FlowRunEngine.setup_flow_run_suspension_request)


@OBSERVES_SUSPENSIONS
def test_an_installed_observer_is_the_engine_s_until_uninstalled() -> None:
    """Installing puts the open observer's context in the engine's place; uninstalling puts Prefect's back."""
    import prefect.flow_engine

    from fanout.core.prefect_adapter import OpenSuspensionObserver

    engines_own = prefect.flow_engine.observe_flow_run_suspension
    observer = OpenSuspensionObserver()
    uninstall = observer.install()
    try:
        assert prefect.flow_engine.observe_flow_run_suspension == observer.observing
    finally:
        uninstall()
    assert prefect.flow_engine.observe_flow_run_suspension is engines_own


def test_prefect_s_job_configuration_takes_its_settings_variables_from_the_hook_the_warm_worker_overrides() -> None:
    """Prefect's job configuration gives a run Prefect's settings through `_base_environment`, which the warm
    worker's configuration overrides to compute them once."""
    from prefect.workers.base import BaseJobConfiguration

    assert "self._base_environment()" in inspect.getsource(BaseJobConfiguration.prepare_for_flow_run)


def test_prefect_s_worker_reads_a_run_s_deployment_and_flow_through_the_client_methods_the_warm_worker_reuses() -> None:
    """Prefect's worker reads a run's deployment and flow with `read_deployment` and `read_flow` on its client,
    the methods the warm worker answers from a recent or ongoing read."""
    from prefect.workers.base import BaseJobConfiguration, BaseWorker

    submission = inspect.getsource(BaseWorker)
    if hasattr(BaseJobConfiguration, "resolve_for_flow_run"):
        submission += inspect.getsource(BaseJobConfiguration.resolve_for_flow_run)
    assert "client.read_deployment(" in submission
    assert "client.read_flow(" in submission


def test_the_labels_hook_is_awaited_by_prefect_s_worker_before_it_starts_the_run() -> None:
    """BaseWorker labels a run through `_give_worker_labels_to_flow_run` before `run()`, the hook the warm
    worker overrides to send the labels beside the run's start."""
    from prefect.workers.base import BaseWorker

    source = inspect.getsource(BaseWorker._submit_run_and_capture_errors)
    assert source.index("self._give_worker_labels_to_flow_run(") < source.index("self.run(")


@SENDS_HEARTBEATS_FROM_THE_ENGINE
def test_prefect_s_engine_sends_a_sync_run_s_heartbeats_through_the_name_the_adapter_replaces() -> None:
    """The sync flow engine enters `_send_heartbeats(self)` from its own module, with the thread joined by default."""
    import prefect.flow_engine
    from prefect.flow_engine import FlowRunEngine

    assert "_send_heartbeats(self)" in inspect.getsource(FlowRunEngine.run_context)
    assert inspect.signature(prefect.flow_engine._send_heartbeats).parameters["join_on_exit"].default is True


@SENDS_HEARTBEATS_FROM_THE_ENGINE
def test_heartbeat_threads_are_left_to_end_by_themselves_once_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """After `heartbeat_threads_not_joined`, the engine's heartbeats are sent without a join at the run's end."""
    import prefect.flow_engine

    from fanout.core.prefect_adapter import heartbeat_threads_not_joined

    calls: list[bool] = []
    monkeypatch.setattr(
        prefect.flow_engine, "_send_heartbeats", lambda engine, join_on_exit=True: calls.append(join_on_exit)
    )
    heartbeat_threads_not_joined()
    heartbeat_threads_not_joined()  # once only
    prefect.flow_engine._send_heartbeats(object())
    assert calls == [False]


READS_DEFAULT_STORAGE = pytest.mark.skipif(
    not hasattr(prefect.results, "_read_server_default_result_storage_block_id"),
    reason="this Prefect does not read the server's default result storage per run",
)


@pytest.fixture
def read_ahead_undone() -> Iterator[None]:
    """Prefect's own read of the server's default result storage, whatever a test installed."""
    yield
    prefect_adapter.forget_default_result_storage()


@READS_DEFAULT_STORAGE
def test_the_default_result_storage_read_ahead_answers_prefect_without_a_request(
    client: SyncPrefectClient, api: FakeApi, read_ahead_undone: None
) -> None:
    """Once read ahead, Prefect's per-run read of the server's default result storage makes no request."""
    import prefect.results

    assert prefect_adapter.read_default_result_storage_ahead(client)
    assert [request.url.path for request in api.requests] == ["/api/admin/storage"]
    assert prefect.results._read_server_default_result_storage_block_id() is None
    assert asyncio.run(prefect.results._aread_server_default_result_storage_block_id()) is None
    assert len(api.requests) == 1


@READS_DEFAULT_STORAGE
def test_a_forgotten_read_ahead_leaves_prefect_to_read_the_default_result_storage_itself(
    client: SyncPrefectClient, api: FakeApi, read_ahead_undone: None
) -> None:
    """After `forget_default_result_storage` Prefect's own read is back in place."""
    import prefect.results

    own = prefect.results._read_server_default_result_storage_block_id
    prefect_adapter.read_default_result_storage_ahead(client)
    prefect_adapter.forget_default_result_storage()
    assert prefect.results._read_server_default_result_storage_block_id is own


@READS_DEFAULT_STORAGE
def test_a_failed_read_ahead_leaves_prefect_s_own_read_in_place(read_ahead_undone: None) -> None:
    """When the server does not answer the read ahead, the run reads its default result storage as before."""
    import prefect.results

    own = prefect.results._read_server_default_result_storage_block_id
    refusing = FakeApi(status=404)
    transport = httpx.MockTransport(refusing)
    with SyncPrefectClient("http://prefect.test/api", httpx_settings={"transport": transport}) as client:
        assert not prefect_adapter.read_default_result_storage_ahead(client)
    assert prefect.results._read_server_default_result_storage_block_id is own


@READS_DEFAULT_STORAGE
def test_prefect_s_engine_reads_the_default_result_storage_through_the_name_the_adapter_replaces() -> None:
    """Prefect's default result storage comes from `_read_server_default_result_storage_block_id`, looked up
    in its module at each call."""
    import prefect.results

    assert "_read_server_default_result_storage_block_id()" in inspect.getsource(
        prefect.results._get_default_result_storage
    )


@pytest.fixture
def version_checks() -> Iterator[Any]:
    """Prefect's cache of the API versions this process checked, empty before and after the test."""
    checking = pytest.importorskip(
        "prefect._internal.version_checking", reason="this Prefect's events client checks no version"
    )
    checking._clear_api_version_check_cache()
    yield checking
    checking._clear_api_version_check_cache()


def events_client_check(version_checks: Any, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Run the check Prefect's events client makes as it connects (to an API that cannot answer); the TLS
    contexts it made, which it makes only when it has not taken the version as checked."""
    import logging

    made = counting_tls_contexts(monkeypatch)

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise httpx.ConnectError("no server in a unit test")

    monkeypatch.setattr(version_checks.httpx, "AsyncClient", unreachable)
    asyncio.run(
        version_checks.check_server_version(
            "http://prefect.test/api", logging.getLogger(__name__), raise_on_error=False
        )
    )
    return made


def test_a_version_the_run_s_client_checked_is_taken_as_checked_by_prefect_s_events_client(
    client: SyncPrefectClient, version_checks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the client checked the server's version, the events client's check makes no TLS context and no request."""
    checked = version_checks._api_version_check_key(str(client.api_url), client.client_version())
    version_checks._cache_api_version_check(checked)
    with temporary_settings({PREFECT_API_URL: "http://prefect.test/api", **NO_VERSION_CHECK_OFF}):
        prefect_adapter.share_version_check(client)
        assert events_client_check(version_checks, monkeypatch) == []


def test_a_version_the_client_did_not_check_is_checked_by_prefect_s_events_client(
    client: SyncPrefectClient, version_checks: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the client checked, nothing is shared: the events client checks for itself."""
    with temporary_settings({PREFECT_API_URL: "http://prefect.test/api", **NO_VERSION_CHECK_OFF}):
        prefect_adapter.share_version_check(client)
        assert len(events_client_check(version_checks, monkeypatch)) == 1


def test_an_events_flow_run_is_read_from_its_resource_id() -> None:
    """A flow-run event names its run in `prefect.flow-run.<id>`; another resource, or no id there, names none."""

    def about(resource: str) -> Event:
        return Event(
            occurred=datetime.now(UTC), event="prefect.flow-run.Completed", resource={"prefect.resource.id": resource}
        )

    run_id = uuid4()
    assert flow_run_id_of(about(f"prefect.flow-run.{run_id}")) == run_id
    assert flow_run_id_of(about(f"prefect.task-run.{run_id}")) is None
    assert flow_run_id_of(about("prefect.flow-run.not-an-id")) is None

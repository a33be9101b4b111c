"""Everything fanout assumes about Prefect beyond its documented API, in one place.

fanout supports a range of Prefect 3 releases. Where it leans on behaviour Prefect does not promise
(settings overrides taking effect when entered, heartbeat and client-retry settings read per use, a
client taking the TLS context it is handed,
artifacts written without events, sync-or-async storage blocks and their private `_resolve_path`,
where a persisted result's file lies, a flow's returned state carrying a result it already wrote, SQLite's
`BEGIN IMMEDIATE`, queued events sent before exit, the cache of what a run's events relate to, the engine's
observer of a run's suspension and its heartbeat thread, the process-wide settings, its read of the
server's default result storage), the
lean is a function here, and tests/unit/test_prefect_adapter.py (tests/integration/test_prefect_adapter.py
where a server is needed) checks each one against the installed Prefect, so a release that breaks one
fails there by name rather than somewhere inside a run.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from uuid import UUID

from prefect.context import SettingsContext
from prefect.filesystems import LocalFileSystem
from prefect.utilities.asyncutils import run_coro_as_sync

from fanout.core.private_files import write_private

if TYPE_CHECKING:
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient
    from prefect.events import Event
    from prefect.filesystems import RemoteFileSystem, WritableFileSystem
    from prefect.flows import Flow

logger = logging.getLogger(__name__)

IMMEDIATE_TRANSACTION: contextvars.ContextVar[bool] = contextvars.ContextVar("fanout_immediate", default=False)
"""Set for a request whose first write transaction should take SQLite's write lock at once (see below)."""

ARTIFACTS_ROUTE: Final = "/artifacts/"
ARTIFACT_ROUTE: Final = "/artifacts/{id}"
FLOW_RUN_RESOURCE: Final = "prefect.flow-run."
"""The prefix of the resource id Prefect's events give a flow run: `prefect.flow-run.<id>`."""


def flow_run_id_of(event: Event) -> UUID | None:
    """The flow run an event is about (its resource `prefect.flow-run.<id>`), or None."""
    resource = event.resource.id
    if not resource.startswith(FLOW_RUN_RESOURCE):
        return None
    try:
        return UUID(resource[len(FLOW_RUN_RESOURCE) :])
    except ValueError:
        return None


def overriding(**sections: dict[str, Any]) -> SettingsContext:
    """A settings context equal to the current one but for `sections`, e.g.
    `overriding(flows={"heartbeat_frequency": None})`; enter it to apply it."""
    current = SettingsContext.get()
    if current is None:
        raise RuntimeError("Prefect has no settings context; it always makes one on import")
    settings = current.settings
    changed = {name: getattr(settings, name).model_copy(update=values) for name, values in sections.items()}
    return SettingsContext(profile=current.profile, settings=settings.model_copy(update=changed))


def has_flow_heartbeats() -> bool:
    """Whether this Prefect sends flow-run heartbeats from the flow (`PREFECT_FLOWS_HEARTBEAT_FREQUENCY`)."""
    current = SettingsContext.get()
    flows = getattr(current.settings, "flows", None) if current is not None else None
    return flows is not None and "heartbeat_frequency" in type(flows).model_fields


def heartbeats_off() -> SettingsContext:
    """No flow-run heartbeats: for runs in this process, which nothing restarts on a missed heartbeat."""
    if not has_flow_heartbeats():
        return overriding()
    return overriding(flows={"heartbeat_frequency": None})


def client_retries(max_retries: int) -> SettingsContext:
    """Prefect's client retries a failed call `max_retries` times (its default is 5, backing off to 32 s)."""
    return overriding(client={"max_retries": max_retries})


def client_retries_off() -> SettingsContext:
    """No client-side retries: for callers whose own next attempt is the retry."""
    return client_retries(0)


def api_tls_context() -> ssl.SSLContext:
    """The TLS context Prefect's client would make for the API, made once per process and per TLS
    settings, for a client of fanout's own (`httpx_settings={"verify": api_tls_context()}`): Prefect
    loads the CA bundle anew for every client it makes unless it is handed a context.

    For an API reached over plain HTTP, where no handshake ever happens, the context trusts no
    certificate at all: loading the bundle would cost tens of milliseconds for nothing, and a
    server that answered with TLS after all would be refused, never trusted unverified.
    """
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_TLS_INSECURE_SKIP_VERIFY, PREFECT_API_URL

    if str(PREFECT_API_URL.value() or "").startswith("http://"):
        return _trusting_nothing()
    return _tls_context(bool(PREFECT_API_TLS_INSECURE_SKIP_VERIFY.value()), PREFECT_API_SSL_CERT_FILE.value() or None)


def tls_context_for(url: str) -> ssl.SSLContext:
    """The TLS context for a client of `url`, made once per process: for plain HTTP one that trusts no
    certificate (as `api_tls_context`), else certifi's bundle, as httpx's default. httpx otherwise loads
    the bundle for every client, tens of milliseconds of CPU, which a poll pays on every round."""
    return _trusting_nothing() if url.startswith("http://") else _tls_context(False, None)


def shared_tls_clients() -> Any:
    """A `SyncClientContext` to enter around a flow call whose client takes `api_tls_context()`: Prefect's
    `get_client(sync_client=True)` hands that client to the run's engine and every other caller inside,
    as it hands out a context's own, so a run makes no client that loads the CA bundle again.

    Prefect shares a context's client only with callers whose `httpx_settings` equal the
    context's, and every caller passes none: the context is built with the client given,
    its recorded settings left empty.
    """
    from prefect.client.orchestration import get_client
    from prefect.context import SyncClientContext

    client = get_client(sync_client=True, httpx_settings={"verify": api_tls_context()})
    return SyncClientContext.model_construct(client=client)


def run_created(
    flow: Flow[..., Any], parameters: dict[str, Any], client: SyncPrefectClient, name: str | None, tags: list[str]
) -> Any:
    """Run `flow` in this process with `parameters` on a flow run created here, named `name` (Prefect names
    it when None) and tagged `tags` besides the current ones; what calling the flow returns.

    Called, a flow lets Prefect's engine create its run, then rename it (`with_options(flow_run_name=...)`,
    which also rebuilds the flow's parameter schema) and leaves other tags to later updates, and its first
    event reads the flow back. Created here as Prefect's `create_flow_run` creates it (the flow, then the
    run), with the name and the tags, and with the flow the API answered kept for the run's events
    (`remember_related`), the run is handed to the engine as a worker hands it a deployment's run.
    """
    from prefect.client.schemas.actions import FlowCreate, FlowRunCreate
    from prefect.client.schemas.objects import Flow as FlowRecord
    from prefect.client.schemas.objects import FlowRun, FlowRunPolicy
    from prefect.context import TagsContext
    from prefect.flow_engine import run_flow
    from prefect.states import Pending, to_state_create

    answered = client.request("POST", "/flows/", json=FlowCreate(name=flow.name).model_dump(mode="json"))
    record = FlowRecord.model_validate_json(answered.text)
    _remember("flow", record)
    current = TagsContext.get().current_tags
    created = FlowRunCreate(
        flow_id=record.id,
        flow_version=flow.version,
        name=name,
        parameters=flow.serialize_parameters(parameters),
        context={},
        tags=[*current, *(tag for tag in tags if tag not in current)],
        parent_task_run_id=None,
        state=to_state_create(Pending()),
        empirical_policy=FlowRunPolicy(retries=flow.retries, retry_delay=int(flow.retry_delay_seconds or 0)),
    )
    response = client.request("POST", "/flow_runs/", json=created.model_dump(mode="json", exclude_unset=True))
    return run_flow(flow, flow_run=FlowRun.model_validate_json(response.text), parameters=parameters)


@functools.cache
def _trusting_nothing() -> ssl.SSLContext:
    """A client context that verifies certificates and hostnames and trusts no certificate authority."""
    return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


@functools.lru_cache(maxsize=8)
def _tls_context(insecure: bool, cert_file: str | None) -> ssl.SSLContext:
    """What Prefect's `SyncPrefectClient` makes: no verification when told to skip it, else the given
    CA file or certifi's bundle."""
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    import certifi

    return ssl.create_default_context(cafile=cert_file or certifi.where())


def create_progress_artifact(
    client: SyncPrefectClient, *, key: str, flow_run_id: UUID, percent: float, description: str
) -> UUID:
    """Create the run's progress artifact without emitting an event; its id."""
    from prefect.client.schemas.actions import ArtifactCreate

    artifact = ArtifactCreate(key=key, type="progress", description=description, data=percent, flow_run_id=flow_run_id)
    response = client.request("POST", ARTIFACTS_ROUTE, json=artifact.model_dump(mode="json", exclude_unset=True))
    response.raise_for_status()
    return UUID(response.json()["id"])


def update_progress_artifact(client: SyncPrefectClient, artifact_id: UUID, *, percent: float, description: str) -> None:
    """Set a progress artifact's percentage and description without emitting an event."""
    from prefect.client.schemas.actions import ArtifactUpdate

    update = ArtifactUpdate(data=percent, description=description)
    response = client.request(
        "PATCH",
        ARTIFACT_ROUTE,
        json=update.model_dump(mode="json", exclude_unset=True),
        path_params={"id": artifact_id},
    )
    response.raise_for_status()


def read_block_path(storage: WritableFileSystem, path: str) -> bytes:
    """`storage.read_path(path)`, whether the block implements it sync or async."""
    data: Any = storage.read_path(path)
    return bytes(run_coro_as_sync(data) if inspect.iscoroutine(data) else data)


def write_block_path(storage: WritableFileSystem, path: str, content: bytes) -> None:
    """`storage.write_path(path, content)`, whether the block implements it sync or async; on a local
    folder, written where Prefect's `LocalFileSystem.write_path` writes (its `_resolve_path`), but
    owner-only (src/fanout/core/private_files.py) and never outside the base path, which older
    Prefect releases do not check."""
    if isinstance(storage, LocalFileSystem):
        target = Path(storage._resolve_path(path))
        base = Path(storage.basepath or ".").expanduser().resolve()
        if not target.resolve().is_relative_to(base):
            raise ValueError(f"Path {target} is outside of the base path {base}.")
        if target.exists() and not target.is_file():
            raise ValueError(f"Path {target} already exists and is not a file.")
        write_private(target, content)
        return
    done: Any = storage.write_path(path, content)
    if inspect.iscoroutine(done):
        run_coro_as_sync(done)


def remote_block_files(storage: RemoteFileSystem, prefix: str) -> tuple[Any, str, list[str]]:
    """The fsspec file system of a `RemoteFileSystem` block, the full path of `prefix` under its base
    path (its `_resolve_path`, which refuses paths escaping it), and the files under that path now.

    fsspec shares one file system object per process and URL, and s3fs keeps the listings it made
    in it: without dropping them first, a process would not see what other hosts wrote since.
    """
    root = storage._resolve_path(prefix)
    filesystem = storage.filesystem
    filesystem.invalidate_cache(root)
    return filesystem, root, [str(path) for path in filesystem.find(root)]


def persisted_result_file(state: Any) -> Path | None:
    """The local file holding a state's persisted result, when it lies in this process's Prefect local
    result storage (`PREFECT_RESULTS_LOCAL_STORAGE_PATH`); else None.

    A run's state carries its result's `ResultRecordMetadata`: with no storage block,
    `storage_key` is the file's absolute path. The path comes from the API, so
    only one inside the local storage folder is ever named here (a state cannot
    make a purge delete a file elsewhere).
    """
    from prefect.results import ResultRecordMetadata
    from prefect.settings import PREFECT_RESULTS_LOCAL_STORAGE_PATH

    data = getattr(state, "data", None)
    if not isinstance(data, ResultRecordMetadata) or data.storage_block_id is not None or not data.storage_key:
        return None
    root = Path(PREFECT_RESULTS_LOCAL_STORAGE_PATH.value()).expanduser().resolve()
    path = Path(data.storage_key).expanduser().resolve()
    return path if path.parent == root and path.is_file() else None


def immediate_transactions() -> None:
    """Make Prefect's server (in this process, on SQLite) begin a request's first write transaction
    with `BEGIN IMMEDIATE` when `IMMEDIATE_TRANSACTION` is set (once: later transactions of the
    request begin as Prefect says).

    Prefect begins most write transactions `DEFERRED`: they read first and take the
    write lock at their first write, and fail (503) when anything committed between
    the two. A request that reads for tens of milliseconds before it writes, as
    creating a flow run does (it validates the parameters in between), lost that race
    to the server's own event and task-run writers again and again
    (docs/design/local-server.md). Taking the lock at once makes other writers wait
    those milliseconds instead. Installed once; a no-op when already installed.
    """
    from prefect.server.database.configurations import AioSqliteConfiguration

    begin = AioSqliteConfiguration.begin_transaction
    if getattr(begin, "_fanout_immediate", False):
        return

    def begin_transaction(self: Any, session: Any, with_for_update: bool = False) -> Any:
        if IMMEDIATE_TRANSACTION.get():
            IMMEDIATE_TRANSACTION.set(False)
            with_for_update = True
        return begin(self, session, with_for_update=with_for_update)

    begin_transaction._fanout_immediate = True  # type: ignore[attr-defined]
    AioSqliteConfiguration.begin_transaction = begin_transaction  # type: ignore[method-assign]


QUEUE_CHECK_SECONDS = 0.01


def backlog(service: Any) -> int:
    """Items still waiting in a Prefect queue service's queue (taken items, batched or not, are not counted)."""
    queue = getattr(service, "_queue", None)
    return int(queue.qsize()) if queue is not None else 0


def send_queued(timeout: float) -> bool:
    """Wait up to `timeout` seconds until Prefect's background senders in this process (events, API logs)
    have sent what they queued, and stop them; whether they did. Called before a command exits, so it exits
    quietly. Each is drained (stopped once its queue is sent) rather than waited on: a batched sender (API
    logs) never marks its items done, so waiting for its queue to empty lasts the whole timeout. They are
    stopped only once their queues are empty (or half the timeout has passed): Prefect 3.4 warns "Still
    processing items" when a sender is stopped with items queued. Anything sent later starts a new sender."""
    from prefect._internal.concurrency.services import _QueueServiceBase

    registered: dict[int, Any] = _QueueServiceBase._instances  # type: ignore[misc]
    services = [service for service in list(registered.values()) if not service._stopped]
    done = threading.Event()

    def wait() -> None:
        emptied_by = time.monotonic() + timeout / 2
        while any(backlog(service) for service in services) and time.monotonic() < emptied_by:
            time.sleep(QUEUE_CHECK_SECONDS)
        for service in services:
            service.drain()
        done.set()

    threading.Thread(target=wait, name="fanout-send-queued", daemon=True).start()
    return done.wait(timeout)


def share_version_check(client: PrefectClient | SyncPrefectClient) -> None:
    """Once `client` has checked the server's API version, make Prefect's events client in this process take
    it as checked too.

    Prefect checks once per process and API URL, but its events client spells the URL
    without the trailing slash the HTTP client gives it: a new process checked twice, the
    second time on the events worker's thread, with one more request and a TLS context of
    its own (the CA bundle loaded). Nothing is shared before `client` checked (or when it
    skipped its check); a no-op for a Prefect whose events client does not check.
    """
    try:
        from prefect._internal import version_checking
    except ImportError:
        return
    key = version_checking._api_version_check_key
    if not version_checking._is_api_version_check_cached(key(str(client.api_url), client.client_version())):
        return
    from prefect.settings import PREFECT_API_URL

    spelled = PREFECT_API_URL.value()
    if spelled:
        version_checking._cache_api_version_check(key(str(spelled), client.client_version()))


def heartbeat_threads_not_joined() -> None:
    """Make Prefect's flow engine in this process end a run's heartbeat thread without waiting for it.

    The thread sleeps in whole seconds and sends nothing once the run's state is
    final, so waiting for it keeps a process whose run is over alive for up to a
    second more: for a warm flow-run process, which exits after its run, that is a
    worker slot held and the next spare forked later. Installed once; a no-op when
    already installed, and for a Prefect whose engine sends no heartbeats this way.
    """
    import prefect.flow_engine

    send = getattr(prefect.flow_engine, "_send_heartbeats", None)
    if send is None or getattr(send, "_fanout_not_joined", False):
        return
    if "join_on_exit" not in inspect.signature(send).parameters:
        return

    def not_joined(engine: Any, join_on_exit: bool = True) -> Any:
        return send(engine, join_on_exit=False)

    not_joined._fanout_not_joined = True  # type: ignore[attr-defined]
    prefect.flow_engine._send_heartbeats = not_joined


def skip_server_version_checks() -> None:
    """Make Prefect's clients in this process skip their check of the server's API version
    (`PREFECT_CLIENT_SERVER_VERSION_CHECK_ENABLED=false`), for a process whose parent checked it.

    Prefect checks once per process and API URL, and its HTTP client, events client and
    events subscriber spell the URL differently: a new process makes up to three
    requests for the version. A warm worker's flow-run process talks to the server its
    worker checked as it started. Applied to the process-wide settings, which Prefect's
    background threads read too; a no-op for a Prefect without the setting.
    """
    import prefect.context

    current = prefect.context.GLOBAL_SETTINGS_CONTEXT
    client = current.settings.client
    if "server_version_check_enabled" not in type(client).model_fields:
        return
    unchecked = client.model_copy(update={"server_version_check_enabled": False})
    settings = current.settings.model_copy(update={"client": unchecked})
    prefect.context.GLOBAL_SETTINGS_CONTEXT = SettingsContext(profile=current.profile, settings=settings)


def read_default_result_storage_ahead(client: SyncPrefectClient) -> bool:
    """Read the server's default result storage now, with `client`, and make the flow runs of this process
    take that answer instead of reading it as they start; whether it was read.

    Prefect's engine reads it (`GET /admin/storage`) for every flow run whose flow names
    no result storage, between Running and the run's first task. A process prepared
    before its run (a warm worker's spare) reads it while no run waits. A failed read
    changes nothing: the run reads it as before. `forget_default_result_storage` undoes
    this. A no-op (False) for a Prefect that does not read it.
    """
    import prefect.results

    if not hasattr(prefect.results, "_read_server_default_result_storage_block_id"):
        return False
    forget_default_result_storage()
    try:
        block_id = client.read_server_default_result_storage().default_result_storage_block_id
    except Exception as error:  # noqa: BLE001 - the run reads it itself
        logger.debug("could not read the server's default result storage ahead: %r", error)
        return False

    def read() -> UUID | None:
        return block_id

    async def aread() -> UUID | None:
        return block_id

    answers: dict[str, Any] = {
        "_read_server_default_result_storage_block_id": read,
        "_aread_server_default_result_storage_block_id": aread,
    }
    for name, answer in answers.items():
        original = getattr(prefect.results, name, None)
        if original is not None:
            answer._fanout_original = original
            setattr(prefect.results, name, answer)
    return True


def forget_default_result_storage() -> None:
    """Let Prefect read the server's default result storage itself again, as before
    `read_default_result_storage_ahead`."""
    import prefect.results

    for name in ("_read_server_default_result_storage_block_id", "_aread_server_default_result_storage_block_id"):
        original = getattr(getattr(prefect.results, name, None), "_fanout_original", None)
        if original is not None:
            setattr(prefect.results, name, original)


RELATED_KINDS: Final = ("flow", "deployment", "work-queue", "work-pool")
"""What Prefect relates every event of a flow run to, besides the run itself, in the order it reads them."""


def related_objects(flow: Any, deployment: Any, work_queue: Any, work_pool: Any) -> dict[str, str]:
    """The objects a flow run's events relate to, as JSON by kind, for `remember_related` in the run's process."""
    objects = dict(zip(RELATED_KINDS, (flow, deployment, work_queue, work_pool), strict=True))
    return {kind: found.model_dump_json(exclude_none=True) for kind, found in objects.items() if found is not None}


def remember_related(objects: dict[str, str]) -> None:
    """Put the objects a flow run's events relate to (`related_objects`' JSON) into Prefect's cache of related
    resources in this process, keyed as Prefect looks them up (by the run's flow, deployment and work-queue
    ids and its work pool's name), so the run's first event reads none of them from the API. A kind left
    out is read by Prefect as before."""
    from prefect.client.schemas.objects import Flow, WorkPool, WorkQueue
    from prefect.client.schemas.responses import DeploymentResponse

    schemas: dict[str, Any] = {
        "flow": Flow,
        "deployment": DeploymentResponse,
        "work-queue": WorkQueue,
        "work-pool": WorkPool,
    }
    for kind, data in objects.items():
        if kind in schemas:
            _remember(kind, schemas[kind].model_validate_json(data))


def _remember(kind: str, found: Any) -> None:
    """Put `found`, a related object of `kind`, into Prefect's cache of related resources, keyed as Prefect looks it up."""
    from prefect.events.related import RESOURCE_CACHE
    from prefect.types._datetime import now

    key = found.name if kind == "work-pool" else found.id
    cached_at: Any = now("UTC")  # the cache's own timestamp type, whichever this Prefect uses
    RESOURCE_CACHE[f"{kind}.{key}"] = ({"kind": kind, "object": found}, cached_at)


class OpenSuspensionObserver:
    """Prefect's observer of a flow run's suspension, opened before the run exists, on a thread and event loop
    of its own.

    Prefect's engine opens one per flow run before it proposes Running: a thread, an
    event loop, an API client and a subscription to the events stream, and it waits for
    all of them. Opened ahead of the run (a spare flow-run process does it while no run
    waits), the run only registers its watch, which reads the run's state once as
    Prefect's does before the run goes on. Suspension events then reach the run as they
    would have. `install` makes the engine use it in this process.
    """

    def __init__(self) -> None:
        self._requests: dict[UUID, Any] = {}
        self._loop = asyncio.new_event_loop()
        self._observer: Any = None
        self._opened = threading.Event()
        self._closing: asyncio.Event | None = None
        self._engines_own: Any = None

    def open(self, timeout: float) -> bool:
        """Open the observer's subscription; whether it is open within `timeout` seconds."""
        context = contextvars.copy_context()  # the settings in force here, as Prefect's own observer copies them
        thread = threading.Thread(target=context.run, args=(self._serve,), name="fanout-suspension", daemon=True)
        thread.start()
        return self._opened.wait(timeout) and self._observer is not None

    def install(self) -> Callable[[], None]:
        """Make Prefect's engine in this process observe suspensions through this observer; undoes it when called."""
        import prefect.flow_engine

        engines_own = self._engines_own = prefect.flow_engine.observe_flow_run_suspension
        prefect.flow_engine.observe_flow_run_suspension = self.observing

        def uninstall() -> None:
            prefect.flow_engine.observe_flow_run_suspension = engines_own
            self.close()

        return uninstall

    @contextmanager
    def observing(self, flow_run_id: UUID, suspension_request: Any, polling_interval: float = 10) -> Iterator[None]:
        """Prefect's `observe_flow_run_suspension`, on this open observer (its polling interval is the observer's);
        Prefect's own when this one's thread has ended."""
        if not self._loop.is_running():
            with self._engines_own(flow_run_id, suspension_request, polling_interval):
                yield
            return
        self._requests[flow_run_id] = suspension_request
        asyncio.run_coroutine_threadsafe(self._observer.watch_flow_run_id(flow_run_id), self._loop).result()
        try:
            yield
        finally:
            self._loop.call_soon_threadsafe(self._observer.remove_in_flight_flow_run_id, flow_run_id)
            self._requests.pop(flow_run_id, None)

    def close(self) -> None:
        """Let the observer's thread close its subscription (not waited for: a run's process exits after its run)."""
        if self._closing is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._closing.set)

    def _serve(self) -> None:
        try:
            self._loop.run_until_complete(self._observe())
        except Exception as error:  # noqa: BLE001 - the run then opens Prefect's own observer
            logger.debug("suspension observer ended: %r", error)
        finally:
            self._opened.set()

    async def _observe(self) -> None:
        from prefect._internal.observers import FlowRunSuspendingObserver

        self._closing = asyncio.Event()
        async with FlowRunSuspendingObserver(on_suspended=self._suspended) as observer:
            self._observer = observer
            self._opened.set()
            await self._closing.wait()

    def _suspended(self, flow_run_id: UUID, state: Any) -> None:
        from prefect._flow_run_suspension import mark_flow_run_suspension_requested

        if not mark_flow_run_suspension_requested(flow_run_id, state):
            request = self._requests.get(flow_run_id)
            if request is not None:
                request.mark_requested(state)


def written_completed(output: Any) -> tuple[Any, Callable[[], None]]:
    """A Completed state for the current flow run to return, its result `output` already written to the
    run's result storage; and `hand_back`, which puts `output` into the state once Prefect recorded it.

    Prefect walks whatever a flow returns element by element before recording it: once
    looking for futures (a returned state's data included), once linking each element
    to the run. The state's record holds None until `hand_back` runs, so both walks take
    a few steps; Prefect sends the record's metadata to the API and does not write it
    again, and whoever calls the flow gets `output` from the record. Call `hand_back`
    from a final-state hook of the flow: Prefect runs them after recording the state
    and before handing its result to the caller.
    """
    from prefect.context import FlowRunContext
    from prefect.states import Completed

    context = FlowRunContext.get()
    if context is None or context.result_store is None:
        raise RuntimeError("written_completed runs inside a flow run")
    store = context.result_store
    record = store.create_result_record(output)
    run_coro_as_sync(store.apersist_result_record(record))  # as Prefect writes a flow's result
    record.result = None

    def hand_back() -> None:
        record.result = output

    return Completed(data=record), hand_back

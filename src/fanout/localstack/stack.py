"""The local stack `fanout up` runs, and the end-to-end tests and benchmarks reuse: server, deployments,
worker, webhook.

Everything listens on 127.0.0.1 and runs in its own process group (src/fanout/localstack/processes.py),
so `LocalStack.stop()` stops every child and whatever they spawned. The deployments are a project's own
`prefect.yaml`, else the seed's from the installed package; workers and the webhook run in `workdir`
(where `fanout up` was started), never in the source tree.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import httpx

from fanout.core.prefect_adapter import tls_context_for
from fanout.core.private_files import write_private
from fanout.core.settings import StackSettings, stack_settings
from fanout.localstack.deploy import (
    WORK_POOL,
    deploy_argv,
    ensure_pools,
    project_file,
    project_pools,
    register_deployments,
)
from fanout.localstack.processes import (
    LOOPBACK,
    Child,
    PrefectServer,
    listen,
    new_nonce,
    spawn,
    wait_healthy,
    wait_ready,
)
from fanout.service.automations import apply_fanout_automations, apply_project_automations, worker_environment
from fanout.service.client import TOKEN_FILE as TOKEN_FILE  # re-exported: where the stack leaves its token
from fanout.service.client import URL_FILE as URL_FILE
from fanout.storage.checkpoints import storage_environment

logger = logging.getLogger(__name__)

DEPLOYMENT = "fan-out-fan-in/default"
WARM_WORKER = "fanout-warm"
"""fanout's own worker type (src/fanout/worker/warm_worker.py); `process` is Prefect's plain one."""
WORKER_POLL_SECONDS = {WARM_WORKER: "5", "process": "1"}
"""How often workers ask for scheduled runs. The warm worker learns of new runs from events, so its poll
is only a fallback; a `process` worker has only its poll (Prefect's default, 10 s, would dominate a 5-item run)."""


def _bin(name: str) -> str:
    """An executable of this interpreter's environment (`prefect`, `uvicorn`)."""
    return str(Path(sys.executable).with_name(name))


PREFECT_CLI = (sys.executable, "-m", "prefect")
"""Prefect's command line from this interpreter: works wherever fanout is installed, with or without
Prefect's `prefect` script beside it."""


def ensure_token(home: Path, environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """The webhook token and where it comes from: FANOUT_WEBHOOK_TOKEN, else `<home>/webhook-token`
    (generated on first use, readable only by its owner)."""
    return ensure_secret(home, environ, "FANOUT_WEBHOOK_TOKEN", TOKEN_FILE, lambda: secrets.token_urlsafe(32))


def ensure_secret(
    home: Path, environ: Mapping[str, str], variable: str, file_name: str, generate: Callable[[], str]
) -> tuple[str, str]:
    """A secret from the environment `variable`, else from `<home>/<file_name>` (written on first use,
    readable only by its owner), and where a client finds it."""
    configured = environ.get(variable)
    if configured:
        return configured, f"the {variable} environment variable"
    path = home / file_name
    if not path.exists():
        write_private(path, generate().encode())
    return path.read_text().strip(), f"cat {shlex.quote(str(path))}"  # a command to paste, whatever the path


DEPLOY_LOG = "prefect-deploy.log"
LONGEST_REASON = 300
"""Characters of Prefect's own words a one-line failure quotes; the log has them all."""


class DeployFailed(RuntimeError):
    """The stack's deployments could not be made; the message is one line, Prefect's whole output is in a log."""


def deploy_failure(what: str, output: str, log: Path, last: bool = True) -> DeployFailed:
    """`DeployFailed` saying `what` failed, quoting one line of Prefect's `output`: the last (where a
    traceback or Prefect's CLI puts the error), else the first (an HTTP error's status and URL). The
    whole output is written to `log` first."""
    write_private(log, output.encode())
    lines = [line.strip() for line in output.splitlines() if line.strip()] or ["no output"]
    reason = lines[-1] if last else lines[0]
    if len(reason) > LONGEST_REASON:
        reason = reason[: LONGEST_REASON - 3] + "..."
    return DeployFailed(f"{what} failed: {reason} (full output: {log})")


@dataclass
class LocalStack:
    """A Prefect server with the fanout deployment, workers and the webhook, all on loopback."""

    home: Path
    workdir: Path = field(default_factory=Path.cwd)
    """Where workers (and so flow runs) and the webhook run: relative FANOUT_* paths resolve against it."""
    project: Path | None = None
    """A Prefect project folder whose `prefect.yaml` the stack deploys; None: the seed's deployment."""
    database_url: str | None = None
    auth_string: str | None = None
    """Prefect API auth (`PREFECT_SERVER_API_AUTH_STRING`); workers, webhook and clients get it too."""
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    webhook_port: int = 0
    """0: any free port; the one bound is kept, so a restart comes back on it."""
    prefect_port: int = 0
    webhook_listener: socket.socket | None = None
    """The webhook's bound socket, handed to each webhook process the stack starts."""
    prefect_listener: socket.socket | None = None
    webhook_nonce: str = field(default_factory=new_nonce)
    token: str = ""
    server: PrefectServer | None = None
    webhook: Child | None = None
    workers: list[Child] = field(default_factory=list)
    worker_specs: dict[str, tuple[dict[str, str], str, str]] = field(default_factory=dict)
    """Each worker's env overrides, type and pool by name, to start it again the same way."""

    @property
    def webhook_url(self) -> str:
        return f"http://{LOOPBACK}:{self.webhook_port}"

    @property
    def api_url(self) -> str:
        assert self.server is not None
        return self.server.api_url

    @property
    def ui_url(self) -> str:
        assert self.server is not None
        return self.server.ui_url

    def client_env(self, **overrides: str) -> dict[str, str]:
        """Environment for a process that talks to this stack's server: the stack's env, then overrides."""
        assert self.server is not None
        server_env = self.server.client_env()
        names = (
            "PREFECT_API_URL",
            "PREFECT_HOME",
            "PREFECT_SERVER_ANALYTICS_ENABLED",
            "PREFECT_API_AUTH_STRING",
            "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED",
        )
        prefect = {name: server_env[name] for name in names if name in server_env}
        return {**self.env, **storage_environment(self.settings()), **prefect, **overrides}  # one result folder

    def api_headers(self) -> dict[str, str]:
        """Headers a raw HTTP client needs for this stack's Prefect API (basic auth when it is on)."""
        if not self.auth_string:
            return {}
        import base64

        return {"Authorization": f"Basic {base64.b64encode(self.auth_string.encode()).decode()}"}

    @property
    def webhook_headers(self) -> dict[str, str]:
        """Headers a client of this stack's webhook sends (its token)."""
        return {"Authorization": f"Bearer {self.token}"}

    def start(self, worker: bool = True, server_timeout: float = 180.0) -> LocalStack:
        """Server, work pool and deployments, one worker (unless `worker=False`) and the webhook; stopped
        again on failure."""
        try:
            self.start_server(server_timeout)
            self.deploy()
            if worker:
                for pool in self.pools():
                    self.start_worker(pool=pool)
            self.start_webhook()
        except BaseException:
            self.stop()
            raise
        return self

    def start_server(self, timeout: float = 180.0) -> PrefectServer:
        """The Prefect server, healthy within `timeout` seconds (a fresh database is migrated first)."""
        self.server = PrefectServer(
            home=self.home / "prefect",
            port=self.prefect_port,
            database_url=self.database_url,
            auth_string=self.auth_string,
            listener=self.prefect_listener,
        )
        self.server.start(timeout)
        self.prefect_port = self.server.port
        return self.server

    def pools(self) -> list[str]:
        """The work pools the stack's deployments run on: those the project names, else fanout's."""
        path = project_file(self.project) if self.project else None
        return project_pools(path) if path else [WORK_POOL]

    def deploy(self) -> None:
        """Create the work pools (if missing) and the deployments: the project's (`prefect deploy`), else
        the seed's from the installed package (src/fanout/localstack/deploy.py); then apply the
        automations that resume crashed runs (src/fanout/service/automations.py) to them. `DeployFailed`,
        in one line, when the Prefect API refuses or fails a call."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        updates: dict[object, object] = {PREFECT_API_URL: self.api_url}
        if self.auth_string:
            updates[PREFECT_API_AUTH_STRING] = self.auth_string
        try:
            with temporary_settings(updates=updates):
                ensure_pools(self.pools())
                if self.project is None:
                    register_deployments()
                else:
                    self.deploy_project(self.project)
            if self.project is None:
                apply_fanout_automations(self.settings(), api_url=self.api_url, auth_string=self.auth_string)
            else:
                apply_project_automations(self.settings(), api_url=self.api_url, auth_string=self.auth_string)
        except httpx.HTTPError as error:  # Prefect's client errors are httpx's
            what = f"deploying to the Prefect API at {self.api_url} ({type(error).__name__})"
            raise deploy_failure(what, str(error), self.home / "logs" / DEPLOY_LOG, last=False) from None

    def deploy_project(self, folder: Path, names: Sequence[str] = ()) -> None:
        """Run `prefect deploy` in `folder` against this stack's server (every deployment of its
        prefect.yaml, or those `names`); `DeployFailed` with Prefect's output when it fails."""
        command = deploy_argv(sys.executable, names)
        env = self.client_env(PREFECT_CLI_PROMPT="false")
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            what = f"`prefect deploy` in {folder} (exit code {done.returncode})"
            raise deploy_failure(what, done.stdout + done.stderr, self.home / "logs" / DEPLOY_LOG)

    def settings(self) -> StackSettings:
        """The stack's own settings, as its environment describes them (crash detection, retries, limits)."""
        fields = {
            name[len("FANOUT_") :].lower(): value for name, value in self.env.items() if name.startswith("FANOUT_")
        }
        return stack_settings(**{name: value for name, value in fields.items() if name in StackSettings.model_fields})

    def project_environment(self) -> dict[str, str]:
        """What the flow runs of a project's deployments need: their return values persisted (in the
        local result storage the webhook shares), so an instance's status shows its output."""
        return {"PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true"} if self.project is not None else {}

    def start_worker(
        self,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        worker_type: str = WARM_WORKER,
        pool: str = WORK_POOL,
    ) -> Child:
        """A worker on `pool`, warm by default (`worker_type="process"`: Prefect's plain one);
        flows it starts inherit `env` (FANOUT_* settings)."""
        name = name or f"worker-{len(self.workers) + 1}"
        worker_env = self.client_env(
            **worker_environment(self.settings()),
            **self.project_environment(),
            PREFECT_WORKER_QUERY_SECONDS=WORKER_POLL_SECONDS[worker_type],
            **dict(env or {}),
        )
        argv = [
            *PREFECT_CLI,
            "worker",
            "start",
            "--pool",
            pool,
            "--type",
            worker_type,
            "--name",
            name,
            "--install-policy",
            "never",
            "--limit",
            str(self.settings().worker_limit),
        ]
        began = datetime.now(UTC)
        child = spawn(name, argv, worker_env, self.home / "logs", cwd=self.workdir)
        self.workers.append(child)
        self.worker_specs[name] = (dict(env or {}), worker_type, pool)
        wait_ready(child, lambda: self.registered(pool, name, began), f"on the pool {pool!r}", timeout=120)
        return child

    def registered(self, pool: str, name: str, since: datetime) -> bool | None:
        """True once the worker `name` has sent this stack's server a heartbeat on `pool` since `since`
        (the server is the stack's own, so the answer is too); None until then."""
        try:
            response = httpx.post(
                f"{self.api_url}/work_pools/{quote(pool, safe='')}/workers/filter",
                json={},
                headers=self.api_headers(),
                timeout=5,
                verify=tls_context_for(self.api_url),
            )
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        beats = [
            datetime.fromisoformat(worker["last_heartbeat_time"])
            for worker in response.json()
            if worker.get("name") == name and worker.get("last_heartbeat_time")
        ]
        return True if any(beat >= since for beat in beats) else None

    def stop_worker(self, child: Child, kill: bool = False) -> None:
        """Stop (or SIGKILL, as a host crash would) one worker and its flow-run processes."""
        child.kill() if kill else child.stop()
        if child in self.workers:
            self.workers.remove(child)

    def start_webhook(self) -> Child:
        """The webhook starter under uvicorn on the stack's webhook socket, talking to this stack's server."""
        if not self.token:
            self.token = ensure_token(self.home, self.env)[0]
        if self.webhook_listener is None:
            self.webhook_listener = listen(self.webhook_port)
        self.webhook_port = int(self.webhook_listener.getsockname()[1])
        descriptor = self.webhook_listener.fileno()
        env = self.client_env(
            FANOUT_WEBHOOK_TOKEN=self.token,
            FANOUT_PREFECT_API_URL=self.api_url,
            FANOUT_DEPLOYMENT_NAME=DEPLOYMENT,
        )
        argv = [
            sys.executable,
            "-m",
            "fanout.localstack.listener",
            "fanout.api.webhook:app_from_environment",
            "--fd",
            str(descriptor),
            "--nonce",
            self.webhook_nonce,
        ]
        self.webhook = spawn("webhook", argv, env, self.home / "logs", cwd=self.workdir, pass_fds=[descriptor])
        wait_healthy(f"{self.webhook_url}/health", self.webhook, timeout=120, nonce=self.webhook_nonce)
        return self.webhook

    def restart(self, child: Child) -> Child:
        """Start a child that died again, the same way and on the same port; a Prefect server that came
        back is followed by a reconcile pass (its automations' windows did not survive it)."""
        if self.server is not None and child is self.server.child:
            child.kill()  # whatever it spawned, so its port is free
            self.server.start()
            self.reconcile_in_background()
            assert self.server.child is not None
            return self.server.child
        if child is self.webhook:
            child.kill()
            return self.start_webhook()
        if child in self.workers:
            self.workers.remove(child)  # its flow-run processes live on and finish their runs
            env, worker_type, pool = self.worker_specs.get(child.name, ({}, WARM_WORKER, WORK_POOL))
            return self.start_worker(child.name, env, worker_type, pool)
        raise ValueError(f"{child.name} is not a child of this stack")

    def reconcile_in_background(self) -> threading.Thread:
        """One reconcile pass over the pool from a thread (src/fanout/service/reconcile.py): runs left
        Running or Pending with no living process are resumed; errors are logged."""
        thread = threading.Thread(target=self._reconcile, name="fanout-reconcile", daemon=True)
        thread.start()
        return thread

    def _reconcile(self) -> None:
        from prefect.client.orchestration import PrefectClient

        from fanout.service.reconcile import reconcile
        from fanout.storage.checkpoints import result_storage

        async def one_pass() -> None:
            async with PrefectClient(self.api_url, auth_string=self.auth_string) as client:
                await reconcile(client, settings, result_storage(settings), [WORK_POOL])

        settings = self.settings()
        try:
            asyncio.run(one_pass())
        except Exception as error:  # noqa: BLE001 - the workers' own passes and the automations remain
            logger.warning("reconcile pass failed: %r", error)

    def children(self) -> list[Child]:
        """Every process the stack started, in start order."""
        server = [self.server.child] if self.server and self.server.child else []
        return [*server, *self.workers, *([self.webhook] if self.webhook else [])]

    def stop(self) -> None:
        """Stop the webhook, the workers, then the server (each with its process group), and let the
        ports go."""
        for child in reversed(self.children()):
            child.stop()
        self.workers.clear()
        if self.server is not None:
            self.server.stop()
        for listener in (self.webhook_listener, self.prefect_listener):
            if listener is not None:
                listener.close()
        self.webhook_listener = self.prefect_listener = None


@contextmanager
def temporary_stack(prefix: str, worker: bool = False, server_timeout: float = 900.0) -> Iterator[LocalStack]:
    """A stack in a temporary folder, without a worker by default (benchmarks start the workers they
    compare); stopped, and its folder removed, at the end of the block."""
    with tempfile.TemporaryDirectory(prefix=prefix) as folder:
        stack = LocalStack(home=Path(folder) / "stack").start(worker=worker, server_timeout=server_timeout)
        try:
            yield stack
        finally:
            stack.stop()

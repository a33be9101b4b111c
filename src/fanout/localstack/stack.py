"""The local stack `fanout up` runs, and the end-to-end tests and benchmarks reuse: server, deployments,
worker, webhook.

Everything binds 127.0.0.1 on its own port and runs in its own process group
(src/fanout/localstack/processes.py), so `LocalStack.stop()` (or Ctrl-C, SIGTERM in
`fanout up`, src/fanout/localstack/up.py) stops every child and whatever they spawned. The
deployments are a project's own `prefect.yaml` (`project`: deployed by `prefect deploy`,
one warm worker per work pool it names), else the seed's from the installed package
(src/fanout/localstack/deploy.py); workers and the webhook run in `workdir` (where
`fanout up` was started), never in the source tree.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fanout.core.settings import FanoutSettings, get_settings
from fanout.localstack.deploy import (
    WORK_POOL,
    deploy_argv,
    ensure_pools,
    project_file,
    project_pools,
    register_deployments,
)
from fanout.localstack.processes import LOOPBACK, Child, PrefectServer, free_port, spawn, wait_healthy
from fanout.service.automations import apply_fanout_automations, apply_project_automations, worker_environment
from fanout.service.client import TOKEN_FILE as TOKEN_FILE  # re-exported: where the stack leaves its token
from fanout.service.client import URL_FILE as URL_FILE
from fanout.storage.checkpoints import storage_environment

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
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(path, generate())
    return path.read_text().strip(), f"cat {path}"


def write_private(path: Path, text: str) -> None:
    """Write `text` to a file only its owner can read, from its creation on (no moment at 0644)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as target:
        target.write(text)
    path.chmod(0o600)


class DeployFailed(RuntimeError):
    """`prefect deploy` of the project failed; the message holds its output."""


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
    prefect_port: int = 0
    token: str = ""
    server: PrefectServer | None = None
    webhook: Child | None = None
    workers: list[Child] = field(default_factory=list)

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
        names = ("PREFECT_API_URL", "PREFECT_HOME", "PREFECT_SERVER_ANALYTICS_ENABLED", "PREFECT_API_AUTH_STRING")
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
        port = {"port": self.prefect_port} if self.prefect_port else {}
        self.server = PrefectServer(
            home=self.home / "prefect",
            database_url=self.database_url,
            auth_string=self.auth_string,
            **port,  # type: ignore[arg-type]
        )
        self.server.start(timeout)
        return self.server

    def pools(self) -> list[str]:
        """The work pools the stack's deployments run on: those the project names, else fanout's."""
        path = project_file(self.project) if self.project else None
        return project_pools(path) if path else [WORK_POOL]

    def deploy(self) -> None:
        """Create the work pools (if missing) and the deployments: the project's (`prefect deploy`), else
        the seed's from the installed package (src/fanout/localstack/deploy.py); then apply the
        automations that resume crashed runs (src/fanout/service/automations.py) to them."""
        from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

        updates: dict[object, object] = {PREFECT_API_URL: self.api_url}
        if self.auth_string:
            updates[PREFECT_API_AUTH_STRING] = self.auth_string
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

    def deploy_project(self, folder: Path, names: Sequence[str] = ()) -> None:
        """Run `prefect deploy` in `folder` against this stack's server (every deployment of its
        prefect.yaml, or those `names`); `DeployFailed` with Prefect's output when it fails."""
        command = deploy_argv(sys.executable, names)
        env = self.client_env(PREFECT_CLI_PROMPT="false")
        done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise DeployFailed(f"`prefect deploy` in {folder} failed ({done.returncode}):\n{done.stdout}{done.stderr}")

    def settings(self) -> FanoutSettings:
        """The fanout settings the stack's environment describes (crash detection, retries)."""
        fields = {
            name[len("FANOUT_") :].lower(): value for name, value in self.env.items() if name.startswith("FANOUT_")
        }
        return get_settings(**{name: value for name, value in fields.items() if name in FanoutSettings.model_fields})

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
        port = free_port()
        name = name or f"worker-{len(self.workers) + 1}"
        worker_env = self.client_env(
            **worker_environment(self.settings()),
            **self.project_environment(),
            PREFECT_WORKER_QUERY_SECONDS=WORKER_POLL_SECONDS[worker_type],
            PREFECT_WORKER_WEBSERVER_HOST=LOOPBACK,
            PREFECT_WORKER_WEBSERVER_PORT=str(port),
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
            "--with-healthcheck",
            "--install-policy",
            "never",
            "--limit",
            str(self.settings().worker_limit),
        ]
        child = spawn(name, argv, worker_env, self.home / "logs", cwd=self.workdir)
        self.workers.append(child)
        wait_healthy(f"http://{LOOPBACK}:{port}/health", child, timeout=120)
        return child

    def stop_worker(self, child: Child, kill: bool = False) -> None:
        """Stop (or SIGKILL, as a host crash would) one worker and its flow-run processes."""
        child.kill() if kill else child.stop()
        if child in self.workers:
            self.workers.remove(child)

    def start_webhook(self) -> Child:
        """The webhook starter under uvicorn, talking to this stack's server."""
        if not self.token:
            self.token = ensure_token(self.home, self.env)[0]
        self.webhook_port = self.webhook_port or free_port()
        env = self.client_env(
            FANOUT_WEBHOOK_TOKEN=self.token,
            FANOUT_PREFECT_API_URL=self.api_url,
            FANOUT_DEPLOYMENT_NAME=DEPLOYMENT,
        )
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "fanout.api.webhook:app_from_environment",
            "--host",
            LOOPBACK,
            "--port",
            str(self.webhook_port),
            "--no-access-log",
        ]
        self.webhook = spawn("webhook", argv, env, self.home / "logs", cwd=self.workdir)
        wait_healthy(f"{self.webhook_url}/health", self.webhook, timeout=120)
        return self.webhook

    def children(self) -> list[Child]:
        """Every process the stack started, in start order."""
        server = [self.server.child] if self.server and self.server.child else []
        return [*server, *self.workers, *([self.webhook] if self.webhook else [])]

    def stop(self) -> None:
        """Stop the webhook, the workers, then the server (each with its process group)."""
        for child in reversed(self.children()):
            child.stop()
        self.workers.clear()


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

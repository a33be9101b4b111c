"""Every knob fanout has, read from `FANOUT_*` environment variables or `.env`, one class per concern.

Each process reads only the concerns it uses, through its own accessor, so a bad setting of another
process does not stop it: the flow process `flow_settings()`, the webhook `api_settings()`, the warm
worker `worker_settings()`, the local stack `stack_settings()`. `get_settings()` reads them all, for a
starter that checks every process's settings before it starts them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROCESSOR_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"
MIN_TOKEN_LENGTH = 16
DEFAULT_RESULT_STORAGE = Path(".fanout/storage")
"""One result-storage default for every starter (`fanout run`, `fanout serve`, `fanout up`'s worker and
webhook), beside the rest of fanout's project-local state in `.fanout/`."""
PLACEHOLDER_TOKENS = {"changeme", "change-me", "secret", "token", "your-token-here", "xxxxxxxxxxxxxxxx"}
FANOUT_ENV = SettingsConfigDict(env_prefix="FANOUT_", env_file=".env", extra="ignore", validate_default=True)
"""Every concern reads the same `FANOUT_*` variables and `.env`, and ignores the others' variables."""


URL_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(location: str) -> bool:
    """True for a storage URL of an fsspec file system (`s3://...`, `gs://...`); `file://` is a folder."""
    return bool(URL_PATTERN.match(location)) and not location.startswith("file://")


class ItemSettings(BaseSettings):
    """What the flow process runs for each item: the processor, its retries, checkpoints and batches."""

    model_config = FANOUT_ENV

    processor: str = Field(
        "fanout.engine.processor:processed",
        pattern=PROCESSOR_PATTERN,
        description="`package.module:function` called once per item (str -> JSON value).",
    )
    max_parallel: int = Field(
        8, ge=1, le=10_000, description="Items in flight at once (threads for sync processors: at most 512)."
    )
    max_items: int = Field(100_000, ge=1, le=10_000_000, description="Largest accepted request.")
    retries: int = Field(3, ge=0, le=20, description="Retries of a transient item failure.")
    retry_delay_seconds: float = Field(1.0, ge=0, le=3600, description="First retry delay; doubles on each retry.")
    retry_jitter_factor: float = Field(
        0.5, ge=0, le=10, description="Random spread of each delay, as Prefect's jitter factor."
    )
    result_storage: str = Field(
        str(DEFAULT_RESULT_STORAGE),
        description="Where checkpoints and results go: a folder, made absolute against the working directory of "
        "the process reading it (every starter hands its workers the absolute path), or an fsspec URL such as "
        "`s3://bucket/prefix` that every host reaches (credentials and endpoint from the file system's own "
        "configuration: AWS_* variables for S3). Unset with Prefect's PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK "
        "configured: that block instead.",
    )
    batch_size: int = Field(0, ge=0, le=100_000, description="Items per task run; 0 chooses automatically.")
    per_item_task_limit: int = Field(
        100, ge=0, le=10_000, description="Up to this many items, each item is its own task run."
    )

    @field_validator("result_storage", mode="before")
    @classmethod
    def _absolute(cls, location: object) -> object:
        """A folder made absolute now, so a process that hands it on (to a worker, a flow run) hands on the
        same folder; a URL as given."""
        if isinstance(location, str | Path) and not is_url(str(location)):
            return str(Path(str(location).removeprefix("file://")).expanduser().absolute())
        return location


class ResumeSettings(BaseSettings):
    """How a crashed deployment run is noticed and resumed: heartbeats, liveness events, the automations'
    windows and retries (src/fanout/service/automations.py), and what the status says meanwhile."""

    model_config = FANOUT_ENV

    heartbeat_seconds: int = Field(
        30, ge=30, le=3600, description="Flow-run heartbeat interval given to workers (Prefect's minimum is 30)."
    )
    crash_after_seconds: int = Field(
        90, ge=60, le=86_400, description="A run with no heartbeat for this long is marked Crashed."
    )
    max_auto_retries: int = Field(
        3, ge=0, le=20, description="Automatic retries of a crashed run before it is marked Failed."
    )
    # fanout's own liveness signal (src/fanout/core/liveness.py): seconds, not Prefect's 30 s heartbeat floor.
    liveness_seconds: float = Field(
        2.0, ge=0.5, le=60, description="A deployment run emits a `fanout.flow-run.alive` event this often."
    )
    # Prefect refuses a proactive trigger window under 10 s.
    silent_after_seconds: int = Field(
        12, ge=10, le=3600, description="A run with no liveness event for this long is presumed dead and resumed."
    )
    retry_window_seconds: int = Field(
        10,
        ge=10,
        le=600,
        description="A Crashed run is retried when no other state followed within this window "
        "(a worker may report one crash twice).",
    )
    resume_deadline_seconds: int = Field(
        300,
        ge=30,
        le=86_400,
        description="A Crashed run that nothing resumed within this long answers 200 Failed on the status URL.",
    )

    @model_validator(mode="after")
    def _window_spans_two_heartbeats(self) -> Self:
        """A window shorter than two heartbeats would crash healthy runs."""
        if self.crash_after_seconds < 2 * self.heartbeat_seconds:
            raise ValueError("crash_after_seconds must be at least twice heartbeat_seconds")
        if self.silent_after_seconds < 3 * self.liveness_seconds:
            raise ValueError("silent_after_seconds must be at least three times liveness_seconds")
        return self


class WorkerSettings(BaseSettings):
    """The warm worker (`fanout-warm`)."""

    model_config = FANOUT_ENV

    warm_spare: bool = Field(
        True,
        description="The warm worker keeps one flow-run process forked and prepared ahead of the next run; "
        "false forks each run's process when the run arrives.",
    )
    standby: bool = Field(
        True,
        description="A warm worker also stands by for the other workers' runs of its pool: it resumes one whose "
        "`fanout.flow-run.alive` events stopped (its host died) without waiting for the automations "
        "(src/fanout/worker/standby.py).",
    )
    standby_silent_seconds: float = Field(
        4.0,
        ge=1,
        le=3600,
        description="How long another worker's run must be silent (no alive event, and none since a probe of the "
        "standby's own event stream came back) before a standby resumes it; at least twice `liveness_seconds`, "
        "so that one late or lost alive event is never taken for a death.",
    )


class LocalStackSettings(BaseSettings):
    """The local stack `fanout up` runs: its workers and its Prefect server."""

    model_config = FANOUT_ENV

    worker_limit: int = Field(
        10,
        ge=1,
        le=1000,
        description="Flow runs each worker of `fanout up` runs at once (`prefect worker start --limit`); a burst of "
        "starts beyond it waits its turn rather than starting every process at once.",
    )
    sqlite_retry_after_seconds: float = Field(
        0.1,
        gt=0,
        le=10,
        description="`Retry-After` of the local Prefect server's 503s on SQLite, so Prefect's clients retry a "
        "lost write race soon rather than after their own backoff.",
    )


class RunnerSettings(BaseSettings):
    """Where the flow process runs items and how many at once, across runs too; the instance lease; the report."""

    model_config = FANOUT_ENV

    task_runner: Literal["thread", "process", "dask"] = Field(
        "thread",
        description="Where items run: threads in the flow process; worker processes on its host (for processors "
        "that compute in Python); or Dask.",
    )
    processes: int = Field(
        0, ge=0, le=1024, description="Worker processes of FANOUT_TASK_RUNNER=process; 0: one per core."
    )
    cpu_bound_processes: bool = Field(
        True,
        description="On threads, once a run's first batches show its items computing in Python, run the rest in "
        "worker processes, one per core (a sync processor that pickles and loads in a child process; module-level "
        "state it changes then changes in the workers' copies); false keeps them on threads.",
    )
    dask_address: str | None = Field(
        None, max_length=256, description="Scheduler of an existing Dask cluster; a LocalCluster when unset."
    )
    dask_workers: int = Field(2, ge=1, le=64, description="Worker processes of the LocalCluster.")
    concurrency_limit: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,127}$",
        description="Prefect global concurrency limit capping items in flight across runs and workers.",
    )
    slot_hold_seconds: float = Field(
        1.0, gt=0, le=60, description="Longest a thread keeps a limit slot across items before queueing again."
    )

    instance_lease_seconds: float = Field(
        60,
        ge=60,
        le=86_400,
        description="Lease a run holds on its instance id (renewed while it runs); a dead holder's lapses after it.",
    )

    report_table_limit: int = Field(
        1000,
        ge=0,
        le=100_000,
        description="Up to this many items the report table lists every item; past it, a summary plus the failures.",
    )


class WebhookSettings(BaseSettings):
    """The HTTP webhook (src/fanout/api/webhook.py) and the clients that find it (`fanout up`, `fanout start`)."""

    model_config = FANOUT_ENV

    webhook_token: SecretStr | None = Field(
        None, description="Bearer token the webhook requires (`Authorization: Bearer ...`); 16+ characters."
    )
    webhook_allow_anonymous: bool = Field(False, description="Development only: let the webhook run without a token.")
    webhook_host: str = Field("127.0.0.1", min_length=1, description="Address the webhook binds.")
    webhook_port: int = Field(8000, ge=0, le=65535, description="Port the webhook binds (0: any free port).")
    webhook_max_body_bytes: int = Field(
        1_000_000, ge=1024, le=256_000_000, description="Largest accepted request body (else 413)."
    )
    webhook_public_url: str | None = Field(
        None, pattern=r"^https?://\S+$", description="Base URL of the management links; the request's own when unset."
    )
    webhook_retry_after_seconds: int = Field(
        1, ge=1, le=3600, description="`Retry-After` the webhook suggests while a run is not finished."
    )
    webhook_api_timeout_seconds: float = Field(
        15.0,
        gt=0,
        le=300,
        description="httpx timeout (connect, read, write) of each Prefect API call the webhook makes (503 beyond it).",
    )
    webhook_max_wait_seconds: float = Field(
        60.0,
        ge=0,
        le=600,
        description="Longest a status request may hold with `?wait=` for the run to finish; a longer wait is cut to it.",
    )
    webhook_read_deadline_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="Longest the Prefect API calls of one GET (a status, a list) may take together, retries "
        "included; 503 with Retry-After beyond it, so a client polling a frozen Prefect is not held.",
    )
    webhook_health_timeout_seconds: float = Field(
        1.5,
        gt=0,
        le=60,
        description="Longest `/health` waits for Prefect's own health check (one try) before answering 503 with why.",
    )
    webhook_api_retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries of a Prefect API call made while answering a request (after a timeout, 429, 502 or "
        "503; waiting Retry-After, else doubling) before the webhook answers 503 itself. The start queue keeps "
        "Prefect's own retries.",
    )
    webhook_max_parameter_bytes: int = Field(
        524_288,
        ge=0,
        le=1_000_000_000,
        description="Largest flow-run parameter the Prefect server takes (its PREFECT_SERVER_API_MAX_PARAMETER_SIZE); "
        "a larger request gets 413 with why. 0: not checked.",
    )
    webhook_pool_wait_seconds: float = Field(
        2.0,
        gt=0,
        le=60,
        description="Longest a webhook request waits for a free connection to Prefect (503 beyond it).",
    )
    webhook_max_connections: int = Field(
        16, ge=2, le=256, description="Connections the webhook keeps to the Prefect API."
    )
    webhook_max_queued_starts: int = Field(
        1000,
        ge=1,
        le=1_000_000,
        description="Accepted starts waiting for Prefect to create their runs; past it a start gets 429 + Retry-After.",
    )
    webhook_submit_concurrency: int = Field(
        4, ge=1, le=64, description="Flow runs the webhook creates on Prefect at once from its start queue."
    )
    webhook_queue_path: Path | None = Field(
        None,
        description="SQLite file of the webhook's start queue; `$PREFECT_HOME/fanout-webhook-starts.sqlite` when unset.",
    )
    prefect_api_url: str | None = Field(
        None,
        pattern=r"^https?://\S+$",
        description="Prefect API the webhook talks to; Prefect's `PREFECT_API_URL` when unset.",
    )
    deployment_name: str = Field(
        "fan-out-fan-in/default", pattern=r"^[^/]+/[^/]+$", description="`<flow>/<deployment>` the starters run."
    )

    output_inline_limit: int = Field(
        1000,
        ge=0,
        le=100_000,
        description="Up to this many items the status document inlines `output`; beyond, `outputUri` and the results URL.",
    )

    @field_validator("webhook_token")
    @classmethod
    def _real_token(cls, token: SecretStr | None) -> SecretStr | None:
        """A short or placeholder token is refused: it would protect nothing."""
        if token is None:
            return None
        value = token.get_secret_value()
        if len(value) < MIN_TOKEN_LENGTH or value.strip().lower() in PLACEHOLDER_TOKENS:
            raise ValueError(f"webhook_token must be a real secret of at least {MIN_TOKEN_LENGTH} characters")
        return token


class SourceSettings(BaseSettings):
    """Where a request may read its items from (files and generators), checked by the webhook and the flow."""

    model_config = FANOUT_ENV

    source_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated paths/URLs under which the webhook may read `source` URIs; none: no URI sources.",
    )
    sources: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated `module:function` generators a request may name as its `source`.",
    )
    max_item_bytes: int = Field(
        1_000_000, ge=1024, le=16_000_000, description="Largest item a source may hold, in bytes."
    )

    @field_validator("source_roots", "sources", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """`a,b` in the environment; a list when given in code."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class FlowSettings(ItemSettings, RunnerSettings, ResumeSettings, SourceSettings):
    """What a flow process reads: its items, where they run, its liveness and its sources."""

    model_config = FANOUT_ENV


class ApiSettings(WebhookSettings, FlowSettings):
    """What the webhook process reads: its own settings, and the flow's, by which it admits requests."""

    model_config = FANOUT_ENV


class WarmWorkerSettings(WorkerSettings, ItemSettings, ResumeSettings):
    """What the warm worker reads: its own settings, the processor it preloads, result storage, resumes."""

    model_config = FANOUT_ENV

    @model_validator(mode="after")
    def _standby_waits_two_beats(self) -> Self:
        """A standby that waited less than two alive intervals would resume runs that are only late."""
        if self.standby_silent_seconds < 2 * self.liveness_seconds:
            raise ValueError("standby_silent_seconds must be at least twice liveness_seconds")
        return self


class StackSettings(LocalStackSettings, ItemSettings, ResumeSettings):
    """What the local stack reads itself: its own settings, result storage, and the resume automations."""

    model_config = FANOUT_ENV


class FanoutSettings(ApiSettings, WarmWorkerSettings, StackSettings):
    """Every setting of every process."""

    model_config = FANOUT_ENV


Settings = TypeVar("Settings", bound=BaseSettings)


def read(kind: type[Settings], **overrides: Any) -> Settings:
    """Read `kind` now (environment and `.env`), with explicit overrides on top; never at import."""
    return kind(**overrides)


def flow_settings(**overrides: object) -> FlowSettings:
    """The flow process's settings."""
    return read(FlowSettings, **overrides)


def api_settings(**overrides: object) -> ApiSettings:
    """The webhook process's settings."""
    return read(ApiSettings, **overrides)


def worker_settings(**overrides: object) -> WarmWorkerSettings:
    """The warm worker's settings."""
    return read(WarmWorkerSettings, **overrides)


def stack_settings(**overrides: object) -> StackSettings:
    """The local stack's own settings."""
    return read(StackSettings, **overrides)


def local_stack_settings() -> LocalStackSettings:
    """The local stack's settings alone, for its Prefect server."""
    return read(LocalStackSettings)


def get_settings(**overrides: object) -> FanoutSettings:
    """Every setting, for a starter that checks all its processes' settings before it starts them."""
    return read(FanoutSettings, **overrides)

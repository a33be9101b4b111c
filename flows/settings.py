"""Every knob fanout has, read from `FANOUT_*` environment variables or `.env`."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROCESSOR_PATTERN = r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"


class FanoutSettings(BaseSettings):
    """Configuration of the flow and its starters; built by `get_settings()`, never at import."""

    model_config = SettingsConfigDict(
        env_prefix="FANOUT_", env_file=".env", extra="ignore", validate_default=True
    )

    processor: str = Field(
        "flows.processor:processed",
        pattern=PROCESSOR_PATTERN,
        description="`package.module:function` called once per item (str -> JSON value).",
    )
    max_parallel: int = Field(8, ge=1, le=512, description="Items in flight at once.")
    max_items: int = Field(100_000, ge=1, le=10_000_000, description="Largest accepted request.")
    retries: int = Field(3, ge=0, le=20, description="Retries of a transient item failure.")
    retry_delay_seconds: float = Field(
        1.0, ge=0, le=3600, description="First retry delay; doubles on each retry."
    )
    retry_jitter_factor: float = Field(
        0.5, ge=0, le=10, description="Random spread of each delay, as Prefect's jitter factor."
    )
    result_storage: Path | None = Field(
        None, description="Folder for results and checkpoints; Prefect's default when unset."
    )
    batch_size: int = Field(
        0, ge=0, le=100_000, description="Items per task run; 0 chooses automatically."
    )
    per_item_task_limit: int = Field(
        100, ge=0, le=10_000, description="Up to this many items, each item is its own task run."
    )


def get_settings(**overrides: object) -> FanoutSettings:
    """Read the settings now (environment and `.env`), with explicit overrides on top."""
    return FanoutSettings(**overrides)  # type: ignore[arg-type]

"""Settings: one class, FANOUT_ prefix, bounded fields."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fanout.core.settings import FanoutSettings, get_settings


def test_defaults_run_the_seed_processor() -> None:
    """Without configuration the processor is the seed's `Processed <item>`."""
    assert FanoutSettings(_env_file=None).processor == "fanout.engine.processor:processed"


def test_environment_overrides_with_fanout_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """A FANOUT_-prefixed variable sets the matching field."""
    monkeypatch.setenv("FANOUT_MAX_PARALLEL", "3")
    assert get_settings().max_parallel == 3


@pytest.mark.parametrize(
    "field, value",
    [
        ("max_parallel", 0),
        ("max_items", 0),
        ("retries", -1),
        ("retry_delay_seconds", -1.0),
        ("processor", "no colon"),
        ("batch_size", -1),
    ],
)
def test_out_of_range_values_are_refused(field: str, value: object) -> None:
    """A value outside a field's bounds is a validation error, not a surprise later."""
    with pytest.raises(ValidationError):
        FanoutSettings(_env_file=None, **{field: value})  # type: ignore[arg-type]


def test_dotenv_file_is_read(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings also come from a `.env` file in the working directory."""
    (tmp_path / ".env").write_text("FANOUT_MAX_ITEMS=42\n")
    monkeypatch.chdir(tmp_path)
    assert get_settings().max_items == 42

"""The workload settings: source roots and generator allow-lists from comma-separated variables."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fanout.core.settings import get_settings


def test_source_roots_and_sources_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    """`FANOUT_SOURCE_ROOTS=a,b` is a list of two roots; same for `FANOUT_SOURCES`."""
    monkeypatch.setenv("FANOUT_SOURCE_ROOTS", "/data/in, s3://bucket/in")
    monkeypatch.setenv("FANOUT_SOURCES", "pipelines.demo:orders")
    settings = get_settings()
    assert settings.source_roots == ["/data/in", "s3://bucket/in"]
    assert settings.sources == ["pipelines.demo:orders"]


def test_no_roots_by_default() -> None:
    """Out of the box nothing may be read by URI over HTTP, and the inline limit is 1,000."""
    settings = get_settings()
    assert settings.source_roots == [] and settings.sources == []
    assert settings.output_inline_limit == 1000


def test_max_parallel_goes_to_ten_thousand() -> None:
    """Async processors may have 10,000 items in flight; more is refused."""
    assert get_settings(max_parallel=10_000).max_parallel == 10_000
    with pytest.raises(ValidationError):
        get_settings(max_parallel=10_001)

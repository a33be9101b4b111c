"""Benchmark processors: the seed's trivial one, remembering which items this process executed."""

from __future__ import annotations

from flows.processor import processed

EXECUTED: list[str] = []


def recorded(item: str) -> str:
    """`Processed <item>`, noting the item so a benchmark can tell what ran again after a crash."""
    EXECUTED.append(item)
    return processed(item)

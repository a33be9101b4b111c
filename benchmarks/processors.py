"""Benchmark processors: the seed's trivial one, remembering which items this process executed."""

from __future__ import annotations

import time

from flows.processor import processed

EXECUTED: list[str] = []


def recorded(item: str) -> str:
    """`Processed <item>`, noting the item so a benchmark can tell what ran again after a crash."""
    EXECUTED.append(item)
    return processed(item)


WAIT_SECONDS = 0.005


def waiting(item: str) -> str:
    """`recorded`, after waiting 5 ms as an item that calls another service would: a run whose
    item work outweighs Prefect's fixed cost per run, so resume and rerun costs show what they are."""
    time.sleep(WAIT_SECONDS)
    return recorded(item)

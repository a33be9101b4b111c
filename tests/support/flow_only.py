"""A processor module that imports only in the flow's own process, as one holding a resource the flow opened
would: in a worker process started by `multiprocessing` it raises `ImportError`."""

from __future__ import annotations

import multiprocessing

if multiprocessing.parent_process() is not None:
    raise ImportError("this module loads only in the flow process")


def process(item: str) -> str:
    return f"Processed {item}"

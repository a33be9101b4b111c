"""The item processor: the seed's default, and loading a pluggable one by name."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from fanout.core.errors import ProcessorNotFound

Processor = Callable[[str], Any]


def processed(item: str) -> str:
    """The seed's activity: `Processed <item>`."""
    return f"Processed {item}"


@lru_cache(maxsize=32)
def load_processor(spec: str) -> Processor:
    """Import `package.module:function`, failing with `ProcessorNotFound` before any item runs."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise ProcessorNotFound(f"processor {spec!r} must look like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ProcessorNotFound(f"cannot import processor module {module_name!r}: {error}") from error
    function = getattr(module, attribute, None)
    if not callable(function):
        raise ProcessorNotFound(f"module {module_name!r} has no callable {attribute!r}")
    return function  # type: ignore[no-any-return]

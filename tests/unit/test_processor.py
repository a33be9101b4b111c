"""Loading the pluggable item processor."""

from __future__ import annotations

import pytest

from fanout.core.errors import ProcessorNotFound
from fanout.engine.processor import load_processor, processed


def test_default_processor_is_the_seeds() -> None:
    """The default processor returns `Processed <item>`."""
    assert processed("item-1") == "Processed item-1"


def test_processor_is_loaded_by_name() -> None:
    """`module:function` names any importable callable."""
    assert load_processor("fanout.engine.processor:processed") is processed


@pytest.mark.parametrize(
    "spec",
    [
        "no_such_module_xyz:run",
        "fanout.engine.processor:missing",
        "fanout.engine.processor:__doc__",
        "fanout.engine.processor",
    ],
)
def test_unusable_processor_is_a_clear_error(spec: str) -> None:
    """A module that does not import, or a missing or non-callable name, raises ProcessorNotFound."""
    with pytest.raises(ProcessorNotFound):
        load_processor(spec)

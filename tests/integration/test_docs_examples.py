"""The Python examples of the README and the docs run as written, under the session's Prefect test server."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import pytest

import fanout
from fanout import ItemsFailed
from tests.support.markdown import DOCS, README, CodeBlock, all_blocks, code_blocks

pytestmark = pytest.mark.skipif(
    not hasattr(fanout, "durable_map"), reason="the examples call fanout.durable_map, not in this build yet"
)


def run_example(block: CodeBlock, folder: Path, as_main: bool = True) -> dict[str, Any]:
    """Save a block as a script and run it, as a reader would (`python example.py`); its globals after."""
    script = folder / "example.py"
    script.write_text(block.code)
    return runpy.run_path(str(script), run_name="__main__" if as_main else "example")


def only_block(page: Path, section: str) -> CodeBlock:
    (block,) = [block for block in code_blocks(page) if block.section == section and block.lang == "python"]
    return block


@pytest.mark.parametrize(
    "block", [block for block in all_blocks("python") if block.marker == "harness"], ids=lambda block: block.where
)
def test_harness_examples_run(block: CodeBlock, tmp_path: Path) -> None:
    """A block marked `docs-test: harness` runs as a script against a Prefect server without error."""
    run_example(block, tmp_path)


def test_readme_flow_sums_in_item_order(tmp_path: Path) -> None:
    """The README's own flow returns the sum of its items' results."""
    backup = run_example(only_block(README, "Your own flow"), tmp_path, as_main=False)["backup"]
    assert backup(["a.txt", "bb.txt"], instance_id="readme-backup") == 11


def test_readme_flow_fails_after_its_retries(tmp_path: Path) -> None:
    """The README's flow retries the transient error it raises, then fails naming the item."""
    backup = run_example(only_block(README, "Your own flow"), tmp_path, as_main=False)["backup"]
    with pytest.raises(ItemsFailed, match=r"c\.tmp"):
        backup(["a.txt", "c.tmp"])


def test_home_page_example(tmp_path: Path) -> None:
    """The docs home page's flow returns one length per word, in order."""
    lengths = run_example(only_block(DOCS / "index.md", "fanout"), tmp_path, as_main=False)["lengths"]
    assert lengths(["ada", "bo", "c"]) == [3, 2, 1]

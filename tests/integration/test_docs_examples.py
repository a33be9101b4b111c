"""The README's and the docs' examples that run in one process run as written, against the session's
Prefect test server: the Python examples, and the shell blocks that call `fanout run` and `fanout results`."""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import fanout
from fanout import ItemsFailed
from tests.conftest import REPO_ROOT
from tests.support.markdown import DOCS, README, CodeBlock, all_blocks, code_blocks, section_blocks

needs_durable_map = pytest.mark.skipif(
    not hasattr(fanout, "durable_map"), reason="the examples call fanout.durable_map, not in this build yet"
)
IN_PROCESS_COMMANDS = ("fanout run", "fanout results")


def run_example(block: CodeBlock, folder: Path, as_main: bool = True) -> dict[str, Any]:
    """Save a block as a script and run it, as a reader would (`python example.py`); its globals after."""
    script = folder / "example.py"
    script.write_text(block.code)
    return runpy.run_path(str(script), run_name="__main__" if as_main else "example")


def only_block(page: Path, section: str) -> CodeBlock:
    (block,) = [block for block in code_blocks(page) if block.section == section and block.lang == "python"]
    return block


@needs_durable_map
@pytest.mark.parametrize(
    "block", [block for block in all_blocks("python") if block.marker == "harness"], ids=lambda block: block.where
)
def test_harness_examples_run(block: CodeBlock, tmp_path: Path) -> None:
    """A block marked `docs-test: harness` runs as a script against a Prefect server without error."""
    run_example(block, tmp_path)


@needs_durable_map
def test_readme_flow_sums_in_item_order(tmp_path: Path) -> None:
    """The README's own flow returns the total size of the files it is given."""
    backup = run_example(only_block(README, "Your own flow"), tmp_path, as_main=False)["backup"]
    (tmp_path / "a.txt").write_bytes(b"abc")
    (tmp_path / "b.txt").write_bytes(b"hello")
    assert backup([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], instance_id="readme-backup") == 8


@needs_durable_map
def test_readme_flow_fails_after_its_retries(tmp_path: Path) -> None:
    """The README's flow retries a file that is not there, then fails saying so."""
    backup = run_example(only_block(README, "Your own flow"), tmp_path, as_main=False)["backup"]
    (tmp_path / "a.txt").write_bytes(b"abc")
    with pytest.raises(ItemsFailed, match="is not there yet"):
        backup([str(tmp_path / "a.txt"), str(tmp_path / "missing.txt")])


@needs_durable_map
def test_home_page_example(tmp_path: Path) -> None:
    """The docs home page's flow returns one length per word, in order."""
    lengths = run_example(only_block(DOCS / "index.md", "fanout"), tmp_path, as_main=False)["lengths"]
    assert lengths(["ada", "bo", "c"]) == [3, 2, 1]


def in_process_blocks() -> list[CodeBlock]:
    """The shell blocks whose every command runs in one process: `fanout run`, `fanout results`, a file."""
    blocks = []
    for block in all_blocks("sh"):
        commands = [line for line in block.code.splitlines() if "fanout " in line]
        if commands and all(any(name in line for name in IN_PROCESS_COMMANDS) for line in commands):
            blocks.append(block)
    return blocks


def output_shown_after(block: CodeBlock) -> str | None:
    """The JSON block that follows a command block in its section: what the page says it prints."""
    blocks = code_blocks(block.page)
    following = blocks[blocks.index(block) + 1 :]
    if following and following[0].lang == "json" and following[0].section == block.section:
        return following[0].code
    return None


@pytest.mark.parametrize("block", in_process_blocks(), ids=lambda block: block.where)
def test_fanout_run_blocks(block: CodeBlock, prefect_api: str) -> None:
    """A shell block of `fanout run` and `fanout results` lines runs as written and exits 0, printing the
    JSON the page shows after it, if any; a run repeated in the block (the tutorial's resume) takes every
    item from the first one's checkpoints."""
    bin_dir = Path(sys.executable).parent
    script = block.code.replace(".venv/bin/fanout", str(bin_dir / "fanout"))
    environment = {**os.environ, "PREFECT_API_URL": prefect_api, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip(), "a fanout run prints its output"
    if (shown := output_shown_after(block)) is not None:
        assert json.loads(done.stdout) == json.loads(shown)
    lines = [line for line in block.code.splitlines() if "fanout run" in line]
    if len(set(lines)) < len(lines):
        assert re.search(r"(\d+) items, \1 from checkpoints, 0 to run", done.stderr), done.stderr


def test_event_curl_passes_the_auth_string(tmp_path: Path) -> None:
    """The deploy guide's event curl sends PREFECT_API_AUTH_STRING as Basic auth, and one `fanout.start` event."""
    (event_curl,) = section_blocks(DOCS / "how-to" / "deploy.md", "Start a run from an event")
    curl = tmp_path / "curl"
    curl.write_text('#!/bin/sh\nprintf "%s\\0" "$@"\n')  # prints the arguments it was given, NUL after each
    curl.chmod(0o755)
    environment = {
        **os.environ,
        "PATH": f"{tmp_path}:{os.environ['PATH']}",
        "PREFECT_API_URL": "http://127.0.0.1:9/api",
        "PREFECT_API_AUTH_STRING": "admin:a secret",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", event_curl], env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    arguments = done.stdout.split("\0")
    assert arguments[arguments.index("-u") + 1] == "admin:a secret"
    (event,) = json.loads(arguments[arguments.index("-d") + 1])
    assert (event["event"], event["payload"]) == ("fanout.start", {"count": 5})

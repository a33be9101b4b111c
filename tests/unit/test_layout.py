"""The rooms stay apart: the library does not import the dev stack, and benchmarks do not import tests."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT


def imported_modules(folder: str) -> dict[str, set[str]]:
    """Every module each file under `folder` imports (top level or inside functions)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / folder).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[str(path.relative_to(REPO_ROOT))] = names
    return found


def importing(folder: str, package: str) -> set[str]:
    return {
        path
        for path, names in imported_modules(folder).items()
        if any(name == package or name.startswith(f"{package}.") for name in names)
    }


def test_the_flow_never_imports_the_dev_stack() -> None:
    """Nothing in flows/ imports devstack/."""
    assert importing("flows", "devstack") == set()


def test_only_fanout_up_calls_into_the_dev_stack() -> None:
    """In deployments/, only the CLI (its `up` command) imports devstack/."""
    assert importing("deployments", "devstack") <= {str(Path("deployments") / "cli.py")}


def test_benchmarks_share_code_with_tests_through_the_dev_stack() -> None:
    """No benchmark imports from tests/; what they share lives in devstack/."""
    assert importing("benchmarks", "tests") == set()
    assert importing("devstack", "tests") == set()

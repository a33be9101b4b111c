"""The package stands alone: `fanout` imports nothing from the repository's flows, tests or benchmarks."""

from __future__ import annotations

import ast
from functools import cache

from tests.conftest import REPO_ROOT


@cache
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


def test_the_package_imports_nothing_from_the_repository() -> None:
    """Nothing in src/fanout imports flows/, tests/ or benchmarks/: the wheel works in any project."""
    for outside in ("flows", "tests", "benchmarks"):
        assert importing("src/fanout", outside) == set(), outside


def test_the_source_tree_holds_one_import_package() -> None:
    """src/ holds exactly one import package, `fanout`, typed."""
    packages = [path.name for path in (REPO_ROOT / "src").iterdir() if (path / "__init__.py").exists()]
    assert packages == ["fanout"]
    assert (REPO_ROOT / "src" / "fanout" / "py.typed").exists()


def test_the_deployed_flows_use_only_the_public_api() -> None:
    """The flows prefect.yaml deploys import `fanout` and its public names, never its internal modules."""
    for path, names in imported_modules("flows").items():
        internal = {name for name in names if name.startswith("fanout.") and name != "fanout.seed"}
        assert internal == set(), path

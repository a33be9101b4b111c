"""The "testing your own flow" page's snippet (docs/testing-your-flow.md) runs as written and passes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT, TELEMETRY_OFF

PAGE = REPO_ROOT / "docs" / "testing-your-flow.md"
SNIPPET = re.compile(r"<!-- snippet: (?P<name>\S+) -->\s*```python\n(?P<code>.*?)```\s*<!-- end snippet -->", re.S)


def test_the_snippet_passes_under_pytest(tmp_path: Path) -> None:
    """The page's test file, saved as it names it, passes its three tests in a fresh pytest of its own (with
    none of the suite's PREFECT_* settings, but its server's telemetry off as every server of the suite, and
    its harness's database a copy of the session's migrated one, as the integration tier's harness has)."""
    [(name, code)] = SNIPPET.findall(PAGE.read_text())
    (tmp_path / name).write_text(code)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PREFECT_", "FANOUT_"))}
    # Schemathesis' and Hypothesis' plugins (the suite's test extra, not the page's) stay out, as in the suite.
    plugins = ["-p", "no:cacheprovider", "-p", "no:schemathesis", "-p", "no:hypothesispytest"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", *plugins, "-p", "tests.support.seeded_harness", name],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**env, "PREFECT_HOME": str(tmp_path / "prefect"), "PYTHONPATH": str(REPO_ROOT), **TELEMETRY_OFF},
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 passed" in done.stdout

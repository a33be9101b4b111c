"""The code blocks of the README and the documentation pages, for the tests that check and run them.

A block may be preceded by an HTML comment that says how it is tested, `<!-- docs-test: harness -->`
(a Python block run as a script under the session's Prefect test server); other Python blocks are
checked to compile, and every `fanout` command line in a shell block is parsed by the CLI itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import REPO_ROOT

README = REPO_ROOT / "README.md"
DOCS = REPO_ROOT / "docs"
MARKER = re.compile(r"<!-- docs-test: (?P<marker>[a-z-]+) -->")


@dataclass(frozen=True)
class CodeBlock:
    """One fenced block: where it is, its language, its text and how it asks to be tested."""

    page: Path
    section: str
    lang: str
    code: str
    marker: str | None

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO_ROOT)} § {self.section}"


def pages() -> list[Path]:
    """The README and every page of the documentation site."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def code_blocks(page: Path) -> list[CodeBlock]:
    """Every fenced block of a page, in order, each with the heading it sits under."""
    blocks: list[CodeBlock] = []
    section, lang, code = "", "", list[str]()
    marker: str | None = None
    fence: str | None = None
    for line in page.read_text().splitlines():
        if fence is None and line.startswith("```"):
            fence, lang, code = "```", line[3:].split(" ")[0], []
        elif fence is not None and line.startswith("```"):
            blocks.append(CodeBlock(page, section, lang, "\n".join(code) + "\n", marker))
            fence, marker = None, None
        elif fence is not None:
            code.append(line)
        elif heading := re.match(r"#{1,3} (.+)$", line):
            section = heading[1]
        elif found := MARKER.fullmatch(line.strip()):
            marker = found["marker"]
    return blocks


def all_blocks(lang: str) -> list[CodeBlock]:
    """The blocks of one language across the README and the docs."""
    return [block for page in pages() for block in code_blocks(page) if block.lang == lang]


def section_blocks(page: Path, section: str, lang: str = "sh") -> list[str]:
    """The code of a section's blocks of one language, in order."""
    return [block.code for block in code_blocks(page) if block.section == section and block.lang == lang]

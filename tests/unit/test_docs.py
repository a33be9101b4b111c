"""The README and the documentation pages say only what the code does: their Python compiles, their
`fanout` command lines parse, and every setting, variable and route they name exists."""

from __future__ import annotations

import ast
import functools
import importlib.util
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml  # type: ignore[import-untyped]  # PyYAML ships no types; Prefect depends on it

from fanout.api.webhook import create_app
from fanout.cli.cli import app
from fanout.core.settings import FanoutSettings
from tests.conftest import REPO_ROOT
from tests.support.markdown import README, CodeBlock, all_blocks, pages

SHELL_SEPARATORS = {"|", "||", "&&", ";", "(", ")", "$(", "`"}
TEST_TOKEN = "docs-test-token-0123456789"


def fanout_command_lines(block: CodeBlock) -> list[list[str]]:
    """The arguments of every `fanout` invocation in a shell block, up to its pipe or closing paren."""
    commands = []
    for tokens in shell_lines(block.code):
        for index, token in enumerate(tokens):
            at_command = index == 0 or tokens[index - 1] in SHELL_SEPARATORS or "=" in tokens[index - 1]
            if at_command and token.rsplit("/", 1)[-1] == "fanout":
                arguments = []
                for argument in tokens[index + 1 :]:
                    if argument in SHELL_SEPARATORS:
                        break
                    arguments.append(argument)
                commands.append(arguments)
    return commands


def shell_lines(script: str) -> list[list[str]]:
    """The words of each command line of a script, with `|`, `;`, `(` and `)` as words of their own; a
    quoted string that spans lines is read to its end, and comments are dropped."""
    lines, pending = [], ""
    for line in script.replace("\\\n", " ").splitlines():
        pending += line + "\n"
        lexer = shlex.shlex(pending, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            lines.append(list(lexer))
        except ValueError:  # a quotation still open: the line goes on
            continue
        pending = ""
    return lines


@functools.cache
def cli_command() -> Any:
    """The click command Typer builds from the app (built once: every parse and scan reads the same)."""
    return typer.main.get_command(app)


def parse_with_cli(arguments: list[str]) -> None:
    """Let the Typer app parse a command line (subcommand, options, their types) without running it."""
    command: Any = cli_command()
    context = typer.Context(command, info_name="fanout")
    while hasattr(command, "get_command") and arguments:  # a group: its subcommand parses the rest
        name, *arguments = arguments
        command = command.get_command(context, name)
        assert command is not None, f"no command {name!r}"
        context = command.make_context(name, list(arguments), parent=context)


def settings_variables() -> set[str]:
    prefix = str(FanoutSettings.model_config.get("env_prefix", ""))
    return {f"{prefix}{name}".upper() for name in FanoutSettings.model_fields}


def cli_variables() -> set[str]:
    """Environment variables the CLI's options read (`--url` from FANOUT_URL, ...)."""
    found: set[str] = set()

    def visit(command: Any) -> None:
        for parameter in command.params:
            envvar = getattr(parameter, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
        for sub in getattr(command, "commands", {}).values():
            visit(sub)

    visit(cli_command())
    return found


@functools.cache
def known_variables() -> frozenset[str]:
    """Every FANOUT_* variable a page may name."""
    return frozenset(settings_variables() | cli_variables() | suite_variables())


def suite_variables() -> set[str]:
    """Variables the test suite and the benchmarks read, which the docs may tell a developer about."""
    sources = [*REPO_ROOT.joinpath("tests").rglob("*.py"), *REPO_ROOT.joinpath("benchmarks").rglob("*.py")]
    return {name for path in sources for name in re.findall(r"\bFANOUT_[A-Z0-9_]+\b", path.read_text())}


@functools.cache
def route_patterns() -> list[re.Pattern[str]]:
    """The webhook's routes as patterns: a template's `{parameter}` matches one path segment."""
    settings = FanoutSettings(_env_file=None, webhook_token=TEST_TOKEN)
    paths = create_app(settings).openapi()["paths"]
    return [re.compile(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(path)) + "$") for path in paths]


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO_ROOT))


@pytest.mark.parametrize("block", all_blocks("python"), ids=lambda block: block.where)
def test_python_blocks_compile(block: CodeBlock) -> None:
    """Every Python block of the README and the docs is valid Python."""
    ast.parse(block.code, filename=block.where)


@pytest.mark.parametrize("block", all_blocks("sh"), ids=lambda block: block.where)
def test_fanout_command_lines_parse(block: CodeBlock) -> None:
    """Every `fanout` command line in a shell block names a real command with real options."""
    for arguments in fanout_command_lines(block):
        try:
            parse_with_cli(arguments)
        except Exception as refused:  # noqa: BLE001 - Typer raises its own (vendored) click's usage errors
            message = refused.format_message() if hasattr(refused, "format_message") else str(refused)
            pytest.fail(f"{block.where}: `fanout {shlex.join(arguments)}`: {message}")


def test_command_lines_are_found() -> None:
    """The command-line scan sees `fanout` however it is called: by path, inside `$(...)`, in a pipe."""
    block = CodeBlock(README, "", "sh", "ID=$(fanout start --count 3 | cat)\n.venv/bin/fanout up # the stack\n", None)
    assert fanout_command_lines(block) == [["start", "--count", "3"], ["up"]]


def test_a_wrong_command_line_is_refused() -> None:
    """The parse that checks the docs refuses an option the command does not have."""
    with pytest.raises(Exception, match=r"No such option:? '?--no-such-option"):
        parse_with_cli(["run", "--no-such-option"])


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_variables_named_exist(page: Path) -> None:
    """Every FANOUT_* variable a page names is a setting, a CLI option's variable or one the tests read."""
    named = set(re.findall(r"\bFANOUT_[A-Z0-9_]+\b", page.read_text()))
    assert named - known_variables() == set()


@pytest.mark.parametrize("page", pages(), ids=page_id)
def test_routes_named_exist(page: Path) -> None:
    """Every `METHOD /path` a page names is a route of the webhook's OpenAPI document."""
    named = re.findall(r"`(?:GET|POST|DELETE|PUT|PATCH) (/[^`?\s]*)", page.read_text())
    assert {path for path in named if not any(route.match(path) for route in route_patterns())} == set()


def test_every_setting_is_described() -> None:
    """Every setting has a description, which the generated settings reference shows."""
    assert [name for name, field in FanoutSettings.model_fields.items() if not field.description] == []


def test_readme_is_a_page() -> None:
    """The README stays short enough to read in five minutes, with no line wider than a terminal."""
    lines = README.read_text().splitlines()
    assert len(lines) <= 150
    assert [line for line in lines if len(line) > 110] == []


@pytest.mark.parametrize("block", all_blocks("yaml"), ids=lambda block: block.where)
def test_yaml_blocks_are_prefect_deployments(block: CodeBlock) -> None:
    """A `prefect.yaml` excerpt is YAML, uses only the keys the project's prefect.yaml uses, names an entrypoint
    that exists, and sets only real settings in its job variables."""
    (deployment,) = yaml.safe_load(block.code)
    project = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())["deployments"]
    assert set(deployment) <= {key for known in project for key in known}
    assert (REPO_ROOT / deployment["entrypoint"].split(":")[0]).is_file()
    env = deployment["work_pool"]["job_variables"]["env"]
    assert set(env) <= settings_variables()


def test_settings_reference_lists_every_setting_once() -> None:
    """The generated settings reference names each FANOUT_* setting exactly once, with its description."""
    spec = importlib.util.spec_from_file_location("reference_hooks", REPO_ROOT / "docs" / "reference_hooks.py")
    assert spec is not None and spec.loader is not None
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = hooks.settings_reference()
    for name, field in FanoutSettings.model_fields.items():
        assert page.count(f"| `FANOUT_{name.upper()}` |") == 1, name
        assert hooks.cell(field.description or "") in page

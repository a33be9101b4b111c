"""MkDocs hook: the reference pages are generated from the code each time the site is built.

A reference page holds a marker, `<!-- fanout:NAME -->`, that this hook replaces with what the code says
now: the settings models (names, defaults, bounds, descriptions), the Typer CLI, the webhook's OpenAPI
document and the public Python API. So the reference cannot drift from the code; the site also gets the
OpenAPI document itself, as `openapi.json`.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

MARKER = re.compile(r"<!-- fanout:(?P<name>[a-z-]+) -->")
BOUNDS = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<", "min_length": "length ≥", "max_length": "length ≤"}


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    """A page not in `mkdocs.yml`'s nav (a note another change added) joins the how-to guides, by its title,
    rather than failing the strict build."""
    docs = Path(config["docs_dir"])
    listed = set(nav_pages(config["nav"]))
    unlisted = sorted(set(docs.rglob("*.md")) - {docs / page for page in listed})
    guides = next(section for section in config["nav"] if "How-to guides" in section)["How-to guides"]
    guides.extend({page_title(path): path.relative_to(docs).as_posix()} for path in unlisted)
    return config


def nav_pages(nav: Any) -> Iterator[str]:
    """Every page a nav (nested lists and titled entries) names."""
    if isinstance(nav, str):
        yield nav
    elif isinstance(nav, list):
        for entry in nav:
            yield from nav_pages(entry)
    elif isinstance(nav, dict):
        for entry in nav.values():
            yield from nav_pages(entry)


def page_title(path: Path) -> str:
    """A page's first `# ` heading, else its file name."""
    heading = re.search(r"^# (.+)$", path.read_text(), flags=re.M)
    return heading[1].strip() if heading else path.stem.replace("-", " ").capitalize()


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace each marker with the reference it names."""
    return MARKER.sub(lambda found: GENERATORS[found["name"]](), markdown)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Ship the webhook's OpenAPI document beside the pages, for any OpenAPI viewer."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, "openapi.json", content=json.dumps(openapi_document(), indent=2) + "\n"))
    return files


# Settings ---------------------------------------------------------------------------------------------


def settings_models() -> list[type[BaseModel]]:
    """The settings classes of `fanout.core.settings`, one per concern, in the order of the module; a class
    that only composes others (`FanoutSettings`) adds no setting of its own and is left out."""
    from pydantic_settings import BaseSettings

    from fanout.core import settings

    found = [
        model
        for _, model in inspect.getmembers(settings, inspect.isclass)
        if issubclass(model, BaseSettings) and model is not BaseSettings and model.__module__ == settings.__name__
    ]
    concerns = [model for model in found if not any(other is not model and issubclass(model, other) for other in found)]
    return sorted(concerns, key=lambda model: inspect.getsourcelines(model)[1])


def setting_rows(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, str, str, str]]:
    """(variable, default, allowed values, description) for every field, nested models' fields included."""
    for name, field in model.model_fields.items():
        variable = env_name(name, field, prefix)
        annotation = field.annotation
        if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            yield from setting_rows(annotation, nested_prefix(annotation, variable))
            continue
        yield variable, default_text(field), bounds_text(field), cell(field.description or "")


def env_name(name: str, field: FieldInfo, prefix: str) -> str:
    """The environment variable that sets a field: its alias when it has one, else prefix + name."""
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    return (alias or f"{prefix}{name}").upper()


def nested_prefix(model: type[BaseModel], variable: str) -> str:
    """A nested settings model reads its own prefix when it declares one."""
    own = getattr(model, "model_config", {}).get("env_prefix")
    return str(own) if own else f"{variable}_"


def default_text(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None or value == []:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int | float):
        return f"`{value:,}`" if not isinstance(value, bool) else f"`{value}`"
    return f"`{value}`"


def bounds_text(field: FieldInfo) -> str:
    parts = []
    for constraint in field.metadata:
        for attribute, symbol in BOUNDS.items():
            value = getattr(constraint, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value:,}" if isinstance(value, int | float) else f"{symbol} {value}")
        pattern = getattr(constraint, "pattern", None)
        if pattern:
            parts.append(f"matches `{pattern}`")
    literal = getattr(field.annotation, "__args__", ())
    if literal and all(isinstance(choice, str) for choice in literal):
        parts.append(" or ".join(f"`{choice}`" for choice in literal))
    return ", ".join(parts)


def settings_reference() -> str:
    lines: list[str] = []
    for model in settings_models():
        prefix = str(model.model_config.get("env_prefix", ""))
        doc = inspect.getdoc(model) or ""
        lines += [f"## `{model.__name__}`", "", doc, ""]
        lines += ["| variable | default | allowed | meaning |", "| --- | --- | --- | --- |"]
        rows = setting_rows(model, prefix)
        lines += [
            f"| `{variable}` | {default} | {cell(allowed)} | {meaning} |"
            for variable, default, allowed, meaning in rows
        ]
        lines.append("")
    return "\n".join(lines)


# CLI --------------------------------------------------------------------------------------------------


def cli_reference() -> str:
    """Typer's own Markdown for the `fanout` app, with its title left to the page."""
    import typer.cli
    import typer.main

    from fanout.cli.cli import app

    command = typer.main.get_command(app)
    context = typer.Context(command, info_name="fanout")
    return typer.cli.get_docs_for_click(obj=command, ctx=context, name="fanout", title=None)


# HTTP API ---------------------------------------------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    """The webhook app's OpenAPI document, as `/openapi.json` serves it."""
    from fanout.api.webhook import create_app
    from fanout.core.settings import ApiSettings

    settings = ApiSettings(_env_file=None, webhook_token=SecretStr("reference-build-token"))
    document: dict[str, Any] = create_app(settings).openapi()
    return document


def http_reference() -> str:
    document = openapi_document()
    lines = ["| method | path | what it does | answers |", "| --- | --- | --- | --- |"]
    sections: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            summary = operation.get("summary", "")
            answers = ", ".join(operation.get("responses", {}))
            summary = cell(summary)
            anchor = slug(f"{method} {path}")
            lines.append(f"| `{method.upper()}` | [`{path}`](#{anchor}) | {summary} | {answers} |")
            sections.append(operation_section(method, path, operation, anchor))
    return "\n".join([*lines, "", *sections])


def operation_section(method: str, path: str, operation: dict[str, Any], anchor: str) -> str:
    lines = [f"### `{method.upper()} {path}` {{#{anchor}}}", "", operation.get("description", "").strip(), ""]
    parameters = [p for p in operation.get("parameters", []) if p["name"] != "authorization"]
    if parameters:
        lines += ["| parameter | in | type | required | description |", "| --- | --- | --- | --- | --- |"]
        for parameter in parameters:
            schema = parameter.get("schema", {})
            kind = schema.get("type") or " or ".join(s.get("type", "") for s in schema.get("anyOf", []))
            described = cell(parameter.get("description") or "")
            lines.append(
                f"| `{parameter['name']}` | {parameter['in']} | {kind} | {'yes' if parameter.get('required') else 'no'} | {described} |"
            )
        lines.append("")
    for status, response in operation.get("responses", {}).items():
        schema = response.get("content", {}).get("application/json", {}).get("schema", {})
        named = schema.get("$ref", "").rsplit("/", 1)[-1] or schema.get("title", "")
        lines.append(f"- **{status}** {response.get('description', '')}" + (f": `{named}`" if named else ""))
    return "\n".join([*lines, ""])


def cell(text: str) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def type_text(annotation: object) -> str:
    """A type as a reader writes it: `int | None`, `Literal['a', 'b']`."""
    if inspect.isclass(annotation) and not getattr(annotation, "__args__", None):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


# Python API -------------------------------------------------------------------------------------------


def python_reference() -> str:
    import fanout

    lines = []
    for name in sorted(fanout.__all__):
        value = getattr(fanout, name)
        lines += [
            f"## `{name}`",
            "",
            f"```python\n{python_signature(name, value)}\n```",
            "",
            inspect.getdoc(value) or "",
            "",
        ]
        if inspect.isclass(value) and issubclass(value, BaseModel):
            lines += ["| field | type | default | description |", "| --- | --- | --- | --- |"]
            for field_name, field in value.model_fields.items():
                kind = cell(type_text(field.annotation))
                lines.append(f"| `{field_name}` | `{kind}` | {default_text(field)} | {cell(field.description or '')} |")
            lines.append("")
    return "\n".join(lines)


def python_signature(name: str, value: object) -> str:
    """`class Name(Base)` for a class, `name(parameters) -> result` for a function, one parameter a line
    when they do not fit on one."""
    if inspect.isclass(value):
        bases = ", ".join(base.__name__ for base in value.__bases__ if base is not object)
        return f"class {name}({bases})" if bases else f"class {name}"
    try:
        signature = inspect.signature(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a callable without a signature Python can read
        return name
    parameters = [
        parameter.replace(annotation=Written(parameter.annotation))
        if isinstance(parameter.annotation, str)
        else parameter
        for parameter in signature.parameters.values()
    ]
    result = signature.return_annotation
    signature = signature.replace(
        parameters=parameters, return_annotation=Written(result) if isinstance(result, str) else result
    )
    line = f"{name}{signature}"
    if len(line) <= 100:
        return line
    arrow = f" -> {signature.return_annotation!r}" if signature.return_annotation is not signature.empty else ""
    return "\n".join([f"{name}(", *(f"    {part}," for part in parameter_parts(signature)), f"){arrow}"])


def parameter_parts(signature: inspect.Signature) -> list[str]:
    """A signature's parameters as written, with the `*` before the first keyword-only one."""
    parts: list[str] = []
    starred = False
    for parameter in signature.parameters.values():
        if parameter.kind is parameter.KEYWORD_ONLY and not starred:
            parts.append("*")
        starred = starred or parameter.kind in (parameter.KEYWORD_ONLY, parameter.VAR_POSITIONAL)
        parts.append(str(parameter))
    return parts


class Written(str):
    """An annotation kept as its source text (modules with `from __future__ import annotations`), shown bare."""

    def __repr__(self) -> str:
        return str(self)


GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings_reference,
    "cli": cli_reference,
    "http-api": http_reference,
    "python-api": python_reference,
}

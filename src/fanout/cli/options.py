"""The options several `fanout` commands share, declared once so they read and behave the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fanout.cli.exit_codes import REFUSED, fail

DEFAULT_HOME = Path(".fanout")


def named_instance(instance_id: str) -> str:
    """An instance id argument as given, or exit 2 before any request when it is empty or only spaces."""
    if not instance_id.strip():
        fail(f"bad input: the instance id is empty or only spaces: {instance_id!r}", REFUSED)
    return instance_id


CountOption = Annotated[int | None, typer.Option(help="Generate item-1 .. item-N.")]
ItemOption = Annotated[list[str] | None, typer.Option("--item", help="An explicit item id; repeat for more.")]
InstanceIdOption = Annotated[str | None, typer.Option(help="Orchestration instance; reuse it to resume.")]
FormatOption = Annotated[str | None, typer.Option("--format", help="The source's format: jsonl, json, csv, lines.")]
ItemKeyOption = Annotated[str | None, typer.Option(help="Field of an object item that identifies it.")]
GeneratorOption = Annotated[
    str | None, typer.Option(help="Take the items from this generator, `module:function` (in FANOUT_SOURCES).")
]
ParamOption = Annotated[
    list[str] | None, typer.Option("--param", help="A generator argument, NAME=VALUE (JSON or text); repeat.")
]
UrlOption = Annotated[
    str | None, typer.Option(envvar="FANOUT_URL", help="Webhook base URL; default: the one `fanout up` wrote.")
]
HomeOption = Annotated[Path, typer.Option(help="Where `fanout up` keeps its token and URL.")]
ServerHomeOption = Annotated[Path, typer.Option(help="Where the background Prefect server lives.")]

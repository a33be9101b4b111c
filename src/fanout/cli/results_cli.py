"""The workload side of the `fanout` CLI: `fanout results ID` (JSONL on stdout), and `--source` for `fanout run`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from fanout.core.settings import get_settings
from fanout.inputs.sources import ItemSource

EXIT_BAD_INPUT = 2


def results(
    instance_id: Annotated[str, typer.Argument(help="The instance whose results to print.")],
) -> None:
    """Print an instance's results in item order as JSON lines (also while it runs; exit 2 if unknown)."""
    from fanout.storage.checkpoints import result_storage
    from fanout.storage.instance_results import InstanceResults
    from fanout.storage.results import NoResults

    try:
        rows = InstanceResults(result_storage(get_settings()), instance_id).rows()
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
    except NoResults as error:
        typer.echo(f"fanout: {error}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None


def source_option(uri: str | None, source_format: str | None) -> ItemSource | None:
    """`--source PATH [--format F]` as the request's `source`; `--format` alone is a mistake."""
    if uri is None:
        if source_format is not None:
            typer.echo("fanout: bad input: --format needs --source", err=True)
            raise typer.Exit(EXIT_BAD_INPUT)
        return None
    try:
        return ItemSource.model_validate({"uri": uri, "format": source_format})
    except ValueError as error:
        typer.echo(f"fanout: bad input: source: {error}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None

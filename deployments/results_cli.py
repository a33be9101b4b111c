"""`fanout results ID`: an instance's results as JSONL on stdout, one `{index, key, status, result, error}` per item."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from flows.checkpoints import result_storage
from flows.instance_results import InstanceResults, local_root
from flows.results import NoResults
from flows.settings import get_settings

EXIT_BAD_INPUT = 2


def results(
    instance_id: Annotated[str, typer.Argument(help="The instance whose results to print.")],
) -> None:
    """Print an instance's results in item order as JSON lines (also while it runs; exit 2 if unknown)."""
    root = local_root(result_storage(get_settings()))
    if root is None:
        typer.echo("fanout: results are read from a local result folder (FANOUT_RESULT_STORAGE)", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    try:
        rows = InstanceResults(root, instance_id).rows()
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
    except NoResults as error:
        typer.echo(f"fanout: {error}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None

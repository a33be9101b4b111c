"""The `fanout` command line."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any, Optional

import typer
from pydantic import ValidationError

from deployments.automations_cli import automations_app
from flows.errors import InvalidRequest, ItemsFailed
from flows.processor import load_processor
from flows.request import FanoutRequest, plan_items
from flows.settings import get_settings

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

app = typer.Typer(help="Durable fan-out / fan-in on Prefect.", no_args_is_help=True, add_completion=False)


app.add_typer(automations_app, name="automations")


@app.callback()
def main() -> None:
    """Durable fan-out / fan-in on Prefect."""


@app.command()
def run(
    count: Annotated[Optional[int], typer.Option(help="Generate item-1 .. item-N.")] = None,
    item: Annotated[Optional[list[str]], typer.Option("--item", help="An explicit item id; repeat for more.")] = None,
    instance_id: Annotated[Optional[str], typer.Option(help="Orchestration instance; reuse it to resume.")] = None,
) -> None:
    """Run the flow here (embedded Prefect) and print its ordered output as JSON."""
    request = _checked_request(count=count, items=item, instance_id=instance_id)
    _prepare_embedded_prefect()
    from flows.fanout import fan_out_fan_in

    try:
        output = fan_out_fan_in(request)
    except ItemsFailed as failed:
        typer.echo(f"fanout: run failed: {failed}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(json.dumps(output, indent=2))


def _prepare_embedded_prefect() -> None:
    """Give the embedded server time to migrate a fresh database (Prefect's 20 s is too short
    on a 2-core machine) and keep it from phoning home; explicit settings still win."""
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _checked_request(**fields: Any) -> FanoutRequest:
    """The request, or exit 2 with a message before anything starts."""
    try:
        settings = get_settings()
        request = FanoutRequest(**fields)
        plan_items(request, settings.max_items)
        load_processor(settings.processor)
    except (ValidationError, InvalidRequest) as error:
        typer.echo(f"fanout: bad input: {_message(error)}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    return request


def _message(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'request'}: {problem['msg']}"
            for problem in error.errors()
        )
    return str(error)


if __name__ == "__main__":
    sys.exit(app())

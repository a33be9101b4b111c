"""The `fanout` command line."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from fanout.cli.automations_cli import automations_app
from fanout.cli.exit_codes import FAILED, REFUSED, checked, fail, problems
from fanout.cli.manage_cli import register as register_manage_commands
from fanout.cli.options import (
    DEFAULT_HOME,
    CountOption,
    FormatOption,
    GeneratorOption,
    HomeOption,
    InstanceIdOption,
    ItemKeyOption,
    ItemOption,
    ParamOption,
    ServerHomeOption,
    UrlOption,
)
from fanout.cli.results_cli import results, source_option
from fanout.core.errors import InvalidRequest, ItemsFailed
from fanout.core.settings import ApiSettings, FanoutSettings, WarmWorkerSettings, WebhookSettings, flow_settings
from fanout.engine.processor import load_processor
from fanout.inputs.admission import admit
from fanout.inputs.request import FanoutRequest

MAX_PORT = 65535

app = typer.Typer(help="Durable fan-out / fan-in on Prefect.", no_args_is_help=True, add_completion=False)


app.add_typer(automations_app, name="automations")
app.command()(results)
register_manage_commands(app)  # fanout list | status | terminate | restart | purge (src/fanout/cli/manage_cli.py)


@app.callback()
def main() -> None:
    """Durable fan-out / fan-in on Prefect."""


@app.command()
def run(
    count: CountOption = None,
    item: ItemOption = None,
    instance_id: InstanceIdOption = None,
    tolerated_failure_count: Annotated[int, typer.Option(help="Failed items tolerated (null in their slots).")] = 0,
    tolerated_failure_percentage: Annotated[float, typer.Option(help="Failed items tolerated, in % of all.")] = 0,
    source: Annotated[str | None, typer.Option(help="Read the items from this path or URL.")] = None,
    source_format: FormatOption = None,
    item_key: ItemKeyOption = None,
    generator: GeneratorOption = None,
    param: ParamOption = None,
    home: ServerHomeOption = DEFAULT_HOME,
) -> None:
    """Run the flow in this process and print its ordered output as JSON.

    It talks to PREFECT_API_URL when set, else to a local Prefect server that fanout
    starts once in the background and reuses (`fanout server stop` stops it).
    """
    request = _checked_request(
        count=count,
        items=item,
        instance_id=instance_id,
        item_key=item_key,
        source=source_option(source, source_format, generator, param),
        tolerated_failure_count=tolerated_failure_count,
        tolerated_failure_percentage=tolerated_failure_percentage,
    )
    api_url = _prefect_api_for_run(home)
    from fanout.core.prefect_adapter import overriding, send_queued
    from fanout.engine.instance_lease import InstanceBusy
    from fanout.seed import run_here

    try:
        with overriding(api={"url": api_url}), refusals_without_traceback():
            output = run_here(request)
            send_queued(timeout=10)  # the run's last events and logs, sent now rather than by the exit hook
    except ItemsFailed as failed:
        fail(f"run failed: {failed}", FAILED)
    except InstanceBusy as refused:  # another run holds the instance (src/fanout/engine/instance_lease.py)
        fail(f"refused: {refused}", REFUSED)
    except InvalidRequest as error:  # found while planning: a bad line past the source's first ones
        fail(f"bad input: {error}", REFUSED)
    typer.echo(json.dumps(output, indent=2))


class _NoRefusalTraceback(logging.Filter):
    """Drops the traceback from Prefect's log of a flow that ended on bad input or a busy instance."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], InvalidRequest):
            record.exc_info = record.exc_text = None
        return True


@contextmanager
def refusals_without_traceback() -> Iterator[None]:
    """While `fanout run` runs its flow: a refusal (a busy instance, a bad line in the source) is the one
    line this command prints, not a traceback above it in Prefect's log."""
    logger, refusals = logging.getLogger("prefect.flow_runs"), _NoRefusalTraceback()
    logger.addFilter(refusals)
    try:
        yield
    finally:
        logger.removeFilter(refusals)


server_app = typer.Typer(help="The background Prefect server `fanout run` starts and reuses.", no_args_is_help=True)
app.add_typer(server_app, name="server")


@server_app.command("status")
def server_status(
    home: ServerHomeOption = DEFAULT_HOME,
) -> None:
    """Say whether the background server runs, where, and its pid (exit 1 when none runs)."""
    from fanout.localstack.local_server import healthy, read_state

    server = read_state(home)
    if server is None:
        typer.echo("no background Prefect server is running")
        raise typer.Exit(FAILED)
    health = "healthy" if healthy(server) else "not answering"
    typer.echo(f"Prefect server at {server.api_url} (pid {server.pid}, {health}, log {server.log_path})")


@server_app.command("stop")
def server_stop(
    home: ServerHomeOption = DEFAULT_HOME,
) -> None:
    """Stop the background server (its database stays for next time)."""
    from fanout.localstack.local_server import stop

    server = stop(home)
    typer.echo(
        f"stopped the Prefect server at {server.api_url} (pid {server.pid})"
        if server
        else "no background Prefect server was running"
    )


def _prefect_api_for_run(home: Path) -> str:
    """PREFECT_API_URL when set, else the background server's (started now if none runs)."""
    from fanout.localstack.local_server import ensure_server

    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        return configured
    try:
        server = ensure_server(home, say=lambda line: typer.echo(line, err=True))
    except (RuntimeError, OSError) as error:
        fail(f"could not start a local Prefect server: {error}", FAILED)
    os.environ["PREFECT_API_URL"] = server.api_url  # for anything the flow starts (Dask workers)
    return server.api_url


@app.command()
def up(
    home: Annotated[Path, typer.Option(help="Project-local folder for the database, logs and token.")] = DEFAULT_HOME,
    prefect_port: Annotated[
        int | None,
        typer.Option(
            min=0, max=MAX_PORT, help="Prefect server port; default: the one used last time, else 4200; 0: any free."
        ),
    ] = None,
    webhook_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=MAX_PORT,
            help="Webhook port; default FANOUT_WEBHOOK_PORT, else the one used last time, else 8000.",
        ),
    ] = None,
    database_url: Annotated[
        str | None, typer.Option(help="Prefect database URL (postgresql+asyncpg://...); SQLite in HOME if unset.")
    ] = None,
    database: Annotated[
        str, typer.Option(help="sqlite (in HOME), or postgres: a local PostgreSQL cluster in HOME/postgres.")
    ] = "sqlite",
    auth: Annotated[
        bool,
        typer.Option(
            "--auth/--no-auth",
            help="Refuse anonymous Prefect API calls (PREFECT_SERVER_API_AUTH_STRING, else HOME/prefect-auth).",
        ),
    ] = True,
) -> None:
    """Start the local stack on 127.0.0.1: Prefect server, the deployments of this folder's prefect.yaml
    (else the seed's), a warm worker per work pool, the webhook."""
    from fanout.localstack.deploy import BadProject, project_file, project_pools
    from fanout.localstack.postgres import PostgresNotAvailable
    from fanout.localstack.processes import ChildFailed, PortTaken
    from fanout.localstack.production import DATABASES
    from fanout.localstack.stack import DeployFailed
    from fanout.localstack.up import HomeBusy, HomeUnusable, UpOptions
    from fanout.localstack.up import up as run_stack

    settings = checked(FanoutSettings)  # every process it starts: a bad setting of any stops it before it starts
    if database not in DATABASES or (database == "postgres" and database_url):
        fail(f"bad input: --database is one of {', '.join(DATABASES)}, and not postgres with --database-url", REFUSED)
    if webhook_port is None and "webhook_port" in settings.model_fields_set:
        webhook_port = settings.webhook_port
    options = UpOptions(home, prefect_port, webhook_port, database, database_url, auth)
    project = project_file(Path.cwd())
    try:
        if project is not None:
            project_pools(project)  # a prefect.yaml that cannot be deployed is refused before anything starts
        code = run_stack(options, say=typer.echo)
    except (PostgresNotAvailable, BadProject) as error:
        fail(f"{error}", REFUSED)
    except (DeployFailed, PortTaken, ChildFailed, HomeBusy) as error:
        fail(f"{error}", FAILED)
    except HomeUnusable as error:  # as `fanout run` says of the background server's home, and with its code
        fail(f"could not start the local stack: {error}", FAILED)
    raise typer.Exit(code)


@app.command()
def start(
    count: CountOption = None,
    item: ItemOption = None,
    instance_id: InstanceIdOption = None,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Follow the run with a progress bar.")] = False,
    url: UrlOption = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Idempotency-Key header.")] = None,
    home: HomeOption = DEFAULT_HOME,
    timeout: Annotated[float | None, typer.Option(help="Give up waiting after this many seconds.")] = None,
    deployment: Annotated[
        str | None, typer.Option(help="Another deployment of the flow (e.g. http-enrich); default: the seed's.")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Read the items from this URI (under FANOUT_SOURCE_ROOTS).")
    ] = None,
    source_format: FormatOption = None,
    item_key: ItemKeyOption = None,
    generator: GeneratorOption = None,
    param: ParamOption = None,
    input_json: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="With --deployment of another flow: its input as JSON (an object of its parameters, or the "
            "value of its one required parameter).",
        ),
    ] = None,
) -> None:
    """Start a run through the webhook; with --wait, show progress and print the output when it finishes."""
    import httpx
    from rich.console import Console

    from fanout.service.client import StartFailed, WebhookUnavailable
    from fanout.service.client import start as post_start
    from fanout.service.client import wait as follow

    if timeout is not None and not timeout > 0:  # also NaN
        fail(f"bad input: --timeout is a number of seconds above 0, not {timeout:g}", REFUSED)
    item_source = source_option(source, source_format, generator, param)
    fields = {
        "count": count,
        "items": item,
        "instance_id": instance_id,
        "source": item_source.model_dump(mode="json", exclude_none=True) if item_source else None,
        "item_key": item_key,
    }
    body: Any = {name: value for name, value in fields.items() if value is not None}
    if input_json is not None:
        body = _other_flow_input(input_json, deployment, body)
    else:
        # The source is read where the run starts (the webhook admits it); here only the fields are checked.
        _checked_request(count=count, items=item, instance_id=instance_id, check_processor=False)
    base_url, token = _webhook_address(url, home)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    console = Console(stderr=True)
    try:
        with httpx.Client(base_url=base_url, headers=headers, timeout=30) as client:
            started = post_start(client, body, idempotency_key, deployment)
            console.print(f"started instance {started['id']}: {started['statusQueryGetUri']}")
            if started.get("uiUrl"):
                console.print(f"Prefect UI: {started['uiUrl']}")
            if not wait:
                typer.echo(json.dumps(started, indent=2))
                return
            finished = follow(client, started["statusQueryGetUri"], console, timeout)
    except WebhookUnavailable as error:  # no answer, a 5xx, or a status URL that stayed unavailable
        fail(f"{error}", FAILED)
    except StartFailed as error:  # a 4xx: the webhook refused
        fail(f"{error}", REFUSED)
    if not finished.completed:
        fail(f"run {finished.status['runtimeStatus']}: {finished.status.get('output')}", FAILED)
    typer.echo(json.dumps(finished.status["output"], indent=2))


@app.command()
def webhook() -> None:
    """Run the webhook starter (uvicorn) on FANOUT_WEBHOOK_HOST:FANOUT_WEBHOOK_PORT against PREFECT_API_URL."""
    import uvicorn

    from fanout.api.webhook import WebhookConfigurationError, create_app

    settings = checked(ApiSettings)
    try:
        application = create_app(settings)
    except WebhookConfigurationError as error:
        fail(f"bad configuration: {error}", REFUSED)
    uvicorn.run(application, host=settings.webhook_host, port=settings.webhook_port)


@app.command()
def serve(name: Annotated[str, typer.Option(help="Deployment name: fan-out-fan-in/<name>.")] = "serve") -> None:
    """Register fan-out-fan-in/NAME and run a warm worker for it in this process; Ctrl-C stops it."""
    from fanout.cli.serve import main as serve_main

    checked(WarmWorkerSettings)
    serve_main(name)


def _webhook_address(url: str | None, home: Path) -> tuple[str, str | None]:
    """The webhook URL and token: explicit, else FANOUT_* settings, else what `fanout up` wrote in HOME."""
    from fanout.service.client import TOKEN_FILE, URL_FILE

    settings = checked(WebhookSettings)
    if url is None:
        written = home / URL_FILE
        url = (
            written.read_text().strip()
            if written.exists()
            else f"http://{settings.webhook_host}:{settings.webhook_port}"
        )
    token = settings.webhook_token.get_secret_value() if settings.webhook_token else None
    if token is None and (home / TOKEN_FILE).exists():
        token = (home / TOKEN_FILE).read_text().strip()
    return url, token


def _other_flow_input(text: str, deployment: str | None, seed_fields: dict[str, Any]) -> Any:
    """`--input` as the body of a start of another flow's deployment, or exit 2 saying why not."""
    problem = None
    if deployment is None:
        problem = "--input needs --deployment (the seed's own start takes --count, --item or a source)"
    elif seed_fields:
        problem = "--input replaces the seed's options (--count, --item, --instance-id, a source, --item-key)"
    if problem is None:
        try:
            return json.loads(text)
        except ValueError as error:
            problem = f"--input is not JSON: {error}"
    fail(f"bad input: {problem}", REFUSED)


def _checked_request(check_processor: bool = True, **fields: Any) -> FanoutRequest:
    """The request, or exit 2 with a message before anything starts."""
    try:
        settings = flow_settings()
        request = FanoutRequest(**fields)
        admit(request, settings, over_http=False)
        if check_processor:
            load_processor(settings.processor)
    except (ValidationError, InvalidRequest) as error:
        fail(f"bad input: {_message(error)}", REFUSED)
    return request


def _message(error: Exception) -> str:
    return problems(error) if isinstance(error, ValidationError) else str(error)


if __name__ == "__main__":
    sys.exit(app())

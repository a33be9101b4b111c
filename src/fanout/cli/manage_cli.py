"""`fanout list | status ID | terminate ID | restart ID | purge ID`: manage any run through the webhook.

Each command is one request to the webhook's `/api/` routes, with the URL and token `fanout start`
uses, and prints the webhook's JSON answer on stdout. A 4xx answer exits 2, no answer or a 5xx exits 1
(src/fanout/cli/exit_codes.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer

from fanout.cli.exit_codes import FAILED, REFUSED, fail
from fanout.cli.options import DEFAULT_HOME, HomeOption, UrlOption, named_instance

HTTP_TIMEOUT = 30.0

IdArgument = Annotated[
    str,
    typer.Argument(callback=named_instance, help="Instance id, or the flow-run id of a run started any other way."),
]


def call(method: str, path: str, url: str | None, home: Path, **options: Any) -> httpx.Response:
    """One request to the webhook; exit 1 when it cannot be reached or answers 5xx, 2 on any other 4xx."""
    from fanout.cli.cli import _webhook_address  # the address `fanout start` uses; imported late (cli imports us)

    base_url, token = _webhook_address(url, home)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with httpx.Client(base_url=base_url, headers=headers, timeout=HTTP_TIMEOUT) as client:
            response = client.request(method, path, **options)
    except httpx.HTTPError as error:
        fail(f"cannot reach the webhook at {base_url}: {error}", FAILED)
    if response.status_code >= 400:
        code = FAILED if response.status_code >= 500 else REFUSED
        fail(f"webhook answered {response.status_code}: {_detail(response)}", code)
    return response


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


def _instance_path(instance_id: str, action: str = "") -> str:
    return f"/api/instances/{quote(instance_id, safe='')}{action}"


def _print(response: httpx.Response) -> None:
    typer.echo(json.dumps(response.json(), indent=2))


def list_instances(
    status: Annotated[
        list[str] | None,
        typer.Option("--status", help="Pending, Running, Completed, Failed, Terminated or Suspended; repeat for more."),
    ] = None,
    created_from: Annotated[
        str | None, typer.Option("--from", help="Created at or after this ISO 8601 time (UTC if naive).")
    ] = None,
    created_to: Annotated[str | None, typer.Option("--to", help="Created at or before this ISO 8601 time.")] = None,
    top: Annotated[
        int | None, typer.Option(help="At most this many (1..1000); the next page's token on stderr.")
    ] = None,
    prefix: Annotated[str | None, typer.Option(help="Only instance ids starting with this.")] = None,
    continuation_token: Annotated[str | None, typer.Option(help="The page a previous list named.")] = None,
    url: UrlOption = None,
    home: HomeOption = DEFAULT_HOME,
) -> None:
    """List instances, newest first, as a JSON list (status without output: `fanout status ID` has it)."""
    params = {
        "runtimeStatus": ",".join(status) if status else None,
        "createdTimeFrom": created_from,
        "createdTimeTo": created_to,
        "top": str(top) if top is not None else None,
        "instanceIdPrefix": prefix,
        "continuationToken": continuation_token,
    }
    response = call("GET", "/api/instances", url, home, params={k: v for k, v in params.items() if v is not None})
    _print(response)
    following = response.headers.get("x-ms-continuation-token")
    if following:
        typer.echo(f"more: --continuation-token {following}", err=True)


def status(instance_id: IdArgument, url: UrlOption = None, home: HomeOption = DEFAULT_HOME) -> None:
    """Print an instance's status document (exit 0 whatever its runtimeStatus; 2 if unknown)."""
    _print(call("GET", _instance_path(instance_id), url, home))


def terminate(instance_id: IdArgument, url: UrlOption = None, home: HomeOption = DEFAULT_HOME) -> None:
    """Cancel a pending or running instance (exit 2 when it already finished)."""
    _print(call("POST", _instance_path(instance_id, "/terminate"), url, home))


def restart(instance_id: IdArgument, url: UrlOption = None, home: HomeOption = DEFAULT_HOME) -> None:
    """Run a finished instance again, reusing its checkpoints (exit 2 while it runs)."""
    _print(call("POST", _instance_path(instance_id, "/restart"), url, home))


def purge(instance_id: IdArgument, url: UrlOption = None, home: HomeOption = DEFAULT_HOME) -> None:
    """Delete a finished instance's runs, artifacts, checkpoints and output records; print what went."""
    _print(call("DELETE", _instance_path(instance_id), url, home))


def register(app: typer.Typer) -> None:
    """Add the commands to the `fanout` CLI."""
    app.command("list")(list_instances)
    for command in (status, terminate, restart, purge):
        app.command()(command)

"""`fanout start`: call the webhook like any client would, and optionally follow the run to its end.

It uses only the seed's HTTP contract: POST /api/start-fanout, then GET the
status URL (following `Location`, waiting `Retry-After`) while it answers 202,
showing `customStatus` as a progress bar, until it answers 200.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

HTTP_TIMEOUT = 30.0
TOKEN_FILE = "webhook-token"
URL_FILE = "webhook-url"
"""Where `fanout up` leaves the webhook's token and URL in its home, for `fanout start` and other clients."""


class StartFailed(Exception):
    """The webhook refused the request (or could not be reached); the message says why."""


@dataclass
class Finished:
    """The status document of a finished run."""

    status: dict[str, Any]

    @property
    def completed(self) -> bool:
        return self.status.get("runtimeStatus") == "Completed"


def start(
    client: httpx.Client, body: dict[str, Any], idempotency_key: str | None = None, deployment: str | None = None
) -> dict[str, Any]:
    """POST the request (to the seed's deployment, or the named one); the started instance's management
    payload, or `StartFailed`."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    route = "/api/start-fanout" if deployment is None else f"/api/start-fanout/{deployment}"
    try:
        response = client.post(route, json=body, headers=headers)
    except httpx.HTTPError as error:
        raise StartFailed(f"cannot reach the webhook at {client.base_url}: {error}") from None
    if response.status_code != 202:
        raise StartFailed(f"webhook answered {response.status_code}: {_detail(response)}")
    return dict(response.json())


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text


def wait(client: httpx.Client, status_url: str, console: Console, timeout: float | None = None) -> Finished:
    """Poll the status URL as the webhook asks, with a progress bar, until the run finished."""
    deadline = None if timeout is None else time.monotonic() + timeout
    url = status_url
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("Pending", total=None)
        while True:
            response = client.get(url)
            if response.status_code not in (200, 202):
                raise StartFailed(f"status URL answered {response.status_code}: {_detail(response)}")
            status = dict(response.json())
            _show(bar, task, status)
            if response.status_code == 200:
                return Finished(status)
            if deadline is not None and time.monotonic() > deadline:
                raise StartFailed(f"still {status.get('runtimeStatus')} after {timeout}s: {status_url}")
            url = response.headers.get("location", url)
            time.sleep(float(response.headers.get("retry-after", "1")))


def _show(bar: Progress, task: Any, status: dict[str, Any]) -> None:
    custom = status.get("customStatus") or {}
    total = custom.get("total")
    done = int(custom.get("completed") or 0) + int(custom.get("failed") or 0)
    failed = int(custom.get("failed") or 0)
    label = status.get("runtimeStatus", "?") + (f" ({failed} failed)" if failed else "")
    bar.update(task, description=label, total=total, completed=done)

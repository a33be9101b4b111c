"""`fanout start`: call the webhook like any client would, and optionally follow the run to its end.

It uses only the seed's HTTP contract: POST /api/start-fanout, then GET the
status URL (held up to a second with `?wait=`, following `Location`, waiting what is
left of `Retry-After`) while it answers 202, showing `customStatus` as a progress bar,
until it answers 200.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

HTTP_TIMEOUT = 30.0
BUSY_STATUSES = (429, 503)
"""Answers that mean "ask again later" (the webhook is up but Prefect is busy, or it sheds load): a wait
goes on after `Retry-After`, as the contract asks of any client."""
UNAVAILABLE_GIVE_UP_SECONDS = 120.0
"""How long a wait rides out a webhook that keeps answering busy, or cannot be reached (a restart), before
it gives up: the run itself goes on either way."""
HOLD_SECONDS = 1
"""How long each status GET may be held by the webhook (`?wait=`): the run's end is shown as it happens,
and the progress bar is refreshed at least this often."""
DEFAULT_RETRY_SECONDS = 1.0
"""The wait between two polls when the webhook did not say (no `Retry-After`, or no answer at all)."""
TOKEN_FILE = "webhook-token"
URL_FILE = "webhook-url"
"""Where `fanout up` leaves the webhook's token and URL in its home, for `fanout start` and other clients."""


class StartFailed(Exception):
    """The webhook refused the request (a 4xx answer), or a wait gave up on a run; the message says why."""


class WebhookUnavailable(StartFailed):
    """The webhook could not be reached or answered 5xx, or its status URL stayed unavailable; the message says
    why (`fanout start` exits 1 on it, 2 on any other `StartFailed`)."""


def failure_for(status_code: int) -> type[StartFailed]:
    """What an answer other than the one expected means: the webhook unavailable (5xx), else a refusal."""
    return WebhookUnavailable if status_code >= 500 else StartFailed


@dataclass
class Finished:
    """The status document of a finished run."""

    status: dict[str, Any]

    @property
    def completed(self) -> bool:
        return self.status.get("runtimeStatus") == "Completed"


def start(
    client: httpx.Client, body: Any, idempotency_key: str | None = None, deployment: str | None = None
) -> dict[str, Any]:
    """POST the request (to the seed's deployment, or the named one; another flow's deployment takes any
    JSON input); the started instance's management payload, or `StartFailed`."""
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    route = "/api/start-fanout" if deployment is None else f"/api/start-fanout/{deployment}"
    try:
        response = client.post(route, json=body, headers=headers)
    except httpx.HTTPError as error:
        raise WebhookUnavailable(f"cannot reach the webhook at {client.base_url}: {error}") from None
    if response.status_code != 202:
        raise failure_for(response.status_code)(f"webhook answered {response.status_code}: {_detail(response)}")
    return dict(response.json())


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text


def wait(client: httpx.Client, status_url: str, console: Console, timeout: float | None = None) -> Finished:
    """Poll the status URL as the webhook asks, each GET held up to `HOLD_SECONDS`, with a progress bar,
    until the run finished.

    Only a 200 ends the wait: a busy answer (429, 503) or a webhook out of reach for a
    while is asked again, so a transient outage never reads as the run's end.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    url = str(httpx.URL(status_url).copy_merge_params({"wait": HOLD_SECONDS}))
    unavailable_since: float | None = None
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("Pending", total=None)
        while True:
            asked = time.monotonic()
            try:
                response: httpx.Response | None = client.get(url)
            except httpx.TransportError as error:
                response, why = None, f"cannot reach the webhook: {error}"
            if response is not None and response.status_code in (200, 202):
                unavailable_since = None
                status = dict(response.json())
                _show(bar, task, status)
                if response.status_code == 200:
                    return Finished(status)
                url = response.headers.get("location", url)
                why = f"still {status.get('runtimeStatus')}"
            else:
                if response is not None:
                    why = f"{response.status_code}: {_detail(response)}"
                    if response.status_code not in BUSY_STATUSES:
                        raise failure_for(response.status_code)(f"status URL answered {why}")
                unavailable_since = unavailable_since or time.monotonic()
                if time.monotonic() - unavailable_since > UNAVAILABLE_GIVE_UP_SECONDS:
                    raise WebhookUnavailable(f"status URL unavailable for {UNAVAILABLE_GIVE_UP_SECONDS:.0f}s ({why})")
            if deadline is not None and time.monotonic() > deadline:
                gave_up = StartFailed if unavailable_since is None else WebhookUnavailable
                raise gave_up(f"{why} after {timeout}s: {status_url}")
            time.sleep(max(0.0, _retry_after(response) - (time.monotonic() - asked)))  # a held answer waited already


def _retry_after(response: httpx.Response | None) -> float:
    """The wait the webhook asked for (seconds); the default when it did not say or could not be reached."""
    try:
        return max(0.0, float(response.headers["retry-after"])) if response is not None else DEFAULT_RETRY_SECONDS
    except (KeyError, ValueError):
        return DEFAULT_RETRY_SECONDS


def _show(bar: Progress, task: Any, status: dict[str, Any]) -> None:
    custom = status.get("customStatus") or {}
    total = custom.get("total")
    done = int(custom.get("completed") or 0) + int(custom.get("failed") or 0)
    failed = int(custom.get("failed") or 0)
    label = status.get("runtimeStatus", "?") + (f" ({failed} failed)" if failed else "")
    bar.update(task, description=label, total=total, completed=done)

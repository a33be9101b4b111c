"""`fanout start --wait` follows the status URL until the first 200, and only a 200 ends the wait."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from rich.console import Console

from fanout.service import client as start_client
from fanout.service.client import Finished, StartFailed, WebhookUnavailable, wait

STATUS_URL = "http://webhook.test/runtime/webhooks/durabletask/instances/i1"
RUNNING = {"runtimeStatus": "Running", "customStatus": {"total": 5, "completed": 2, "failed": 0}}
COMPLETED = {"runtimeStatus": "Completed", "output": ["Processed item-1"]}


def scripted(*answers: httpx.Response | Exception) -> httpx.Client:
    """A client whose GETs get `answers` in turn (an exception is raised as the transport's)."""
    remaining: Iterator[httpx.Response | Exception] = iter(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        next_answer = next(remaining)
        if isinstance(next_answer, Exception):
            raise next_answer
        return next_answer

    return httpx.Client(transport=httpx.MockTransport(answer))


def accepted(body: dict[str, object] = RUNNING) -> httpx.Response:
    return httpx.Response(202, json=body, headers={"Location": STATUS_URL, "Retry-After": "0"})


def busy(status: int = 503) -> httpx.Response:
    return httpx.Response(status, json={"detail": "Prefect API answered 503"}, headers={"Retry-After": "0"})


def quiet() -> Console:
    return Console(quiet=True)


def test_busy_answers_and_an_unreachable_webhook_are_asked_again_until_the_200(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 503, a 429 and a refused connection in the middle of a run do not end the wait; the 200 does."""
    monkeypatch.setattr(start_client, "DEFAULT_RETRY_SECONDS", 0.0)
    client = scripted(
        accepted(), busy(503), busy(429), httpx.ConnectError("refused"), accepted(), httpx.Response(200, json=COMPLETED)
    )

    finished = wait(client, STATUS_URL, quiet())

    assert finished == Finished(COMPLETED) and finished.completed


def test_a_client_error_ends_the_wait_with_its_detail() -> None:
    """A 404 (a purged instance) is an answer, not a hiccup: the wait stops and says why."""
    client = scripted(accepted(), httpx.Response(404, json={"detail": "no instance i1"}))

    with pytest.raises(StartFailed, match="404: no instance i1"):
        wait(client, STATUS_URL, quiet())


def test_a_webhook_busy_for_too_long_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy answers are asked again only for a while, then the wait gives up saying why."""
    monkeypatch.setattr(start_client, "UNAVAILABLE_GIVE_UP_SECONDS", 0.0)
    client = scripted(busy(), busy())

    with pytest.raises(StartFailed, match=r"unavailable .*503"):
        wait(client, STATUS_URL, quiet())


def test_the_timeout_names_the_last_status() -> None:
    """Past its timeout, a wait on a running instance stops and names the status it last saw."""
    client = scripted(accepted())

    with pytest.raises(StartFailed, match="still Running after 0"):
        wait(client, STATUS_URL, quiet(), timeout=0)


def test_a_timeout_reached_while_the_webhook_is_out_of_reach_is_the_webhook_unavailable() -> None:
    """Past its timeout with no answer from the status URL, the wait raises `WebhookUnavailable`, not a refusal."""
    client = scripted(httpx.ConnectError("refused"))

    with pytest.raises(WebhookUnavailable, match="cannot reach the webhook: refused after 0"):
        wait(client, STATUS_URL, quiet(), timeout=0)


def test_each_status_read_asks_the_webhook_to_hold_it_until_the_end() -> None:
    """The first read carries `?wait=`, so the run's end is heard when it happens, not at the next poll."""
    asked: list[httpx.URL] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        return httpx.Response(200, json=COMPLETED)

    wait(httpx.Client(transport=httpx.MockTransport(answer)), STATUS_URL, quiet())

    assert asked[0].params["wait"] == str(start_client.HOLD_SECONDS)

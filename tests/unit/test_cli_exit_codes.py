"""`fanout` commands end with the documented exit code and one line saying why: 1 when the webhook or Prefect is
unavailable, 2 when the request or an option is refused (src/fanout/cli/exit_codes.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fanout.cli.cli import app
from fanout.cli.exit_codes import FAILED, REFUSED
from fanout.service import client as start_client
from fanout.storage import checkpoints

WEBHOOK = "http://webhook.test"
STATUS_URL = f"{WEBHOOK}/api/instances/i1"
STARTED = {"id": "i1", "statusQueryGetUri": STATUS_URL}
COMPLETED = {"runtimeStatus": "Completed", "output": ["Processed item-1"]}
ENV = {"FANOUT_WEBHOOK_TOKEN": "t" * 20}

Answer = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def webhook_answers(monkeypatch: pytest.MonkeyPatch) -> Callable[[Answer], None]:
    """Route the CLI's HTTP calls to a handler in this test, not to a network."""
    real_client = httpx.Client

    def answering(answer: Answer) -> None:
        monkeypatch.setattr(
            httpx, "Client", lambda **options: real_client(transport=httpx.MockTransport(answer), **options)
        )

    return answering


def start(*args: str) -> tuple[int, str]:
    """`fanout start --url WEBHOOK --count 1 <args>` in this process: its exit code and stderr."""
    ran = CliRunner().invoke(app, ["start", "--url", WEBHOOK, "--count", "1", *args], env=ENV)
    return ran.exit_code, ran.stderr


def test_start_exits_1_when_the_webhook_cannot_be_reached(webhook_answers: Callable[[Answer], None]) -> None:
    """A refused connection is the webhook unavailable: exit 1, one line saying so."""

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused")

    webhook_answers(refused)
    code, stderr = start()
    assert (code, stderr) == (FAILED, f"fanout: cannot reach the webhook at {WEBHOOK}: Connection refused\n")


def test_start_exits_1_when_the_webhook_answers_5xx(webhook_answers: Callable[[Answer], None]) -> None:
    """A 503 to the start (Prefect unavailable behind the webhook) exits 1, as the manage commands do."""
    webhook_answers(lambda request: httpx.Response(503, json={"detail": "Prefect API unavailable"}))
    assert start() == (FAILED, "fanout: webhook answered 503: Prefect API unavailable\n")


def test_start_exits_2_when_the_webhook_refuses_the_request(webhook_answers: Callable[[Answer], None]) -> None:
    """A 4xx answer is a refusal: exit 2 with the webhook's detail."""
    webhook_answers(lambda request: httpx.Response(422, json={"detail": "count: too many"}))
    assert start() == (REFUSED, "fanout: webhook answered 422: count: too many\n")


def test_start_wait_exits_1_when_the_status_url_stays_unavailable(
    webhook_answers: Callable[[Answer], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A started run whose status URL cannot be reached for longer than a wait rides out exits 1."""
    monkeypatch.setattr(start_client, "UNAVAILABLE_GIVE_UP_SECONDS", 0.0)
    monkeypatch.setattr(start_client, "DEFAULT_RETRY_SECONDS", 0.0)

    def started_then_gone(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json=STARTED)
        raise httpx.ConnectError("Connection refused")

    webhook_answers(started_then_gone)
    code, stderr = start("--wait")
    assert code == FAILED and stderr.splitlines()[-1].startswith("fanout: status URL unavailable for 0s")


@pytest.mark.parametrize("timeout", ["0", "-1", "nan"])
def test_start_refuses_a_timeout_that_is_not_above_0(timeout: str, webhook_answers: Callable[[Answer], None]) -> None:
    """`--timeout 0` or `-1` is bad input: exit 2, one line naming the option, nothing sent to the webhook."""
    sent: list[httpx.Request] = []

    def finished_at_once(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(202, json=STARTED) if request.method == "POST" else httpx.Response(200, json=COMPLETED)

    webhook_answers(finished_at_once)
    code, stderr = start("--wait", "--timeout", timeout)
    assert code == REFUSED and sent == []
    assert stderr.startswith("fanout: bad input: --timeout is a number of seconds above 0") and stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("option", "port"), [("--prefect-port", "-1"), ("--prefect-port", "70000"), ("--webhook-port", "99999")]
)
def test_up_refuses_a_port_outside_0_to_65535(
    option: str, port: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port no socket can bind is refused at the option: exit 2, the option named, the home not even made."""
    monkeypatch.chdir(tmp_path)
    ran = CliRunner().invoke(app, ["up", "--home", str(tmp_path / "home"), option, port], env=ENV)
    assert ran.exit_code == REFUSED and f"Invalid value for '{option}'" in ran.stderr
    assert "Traceback" not in ran.output and not (tmp_path / "home").exists()


def test_up_with_a_home_that_cannot_be_created_says_why_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A --home under a regular file: exit 1 with one line naming the home and the OS error, no traceback."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    home = tmp_path / "a-file" / "home"
    ran = CliRunner().invoke(app, ["up", "--home", str(home), "--prefect-port", "0", "--webhook-port", "0"], env=ENV)
    assert ran.exit_code == FAILED and isinstance(ran.exception, SystemExit)
    assert ran.stderr.startswith(f"fanout: could not start the local stack: cannot create or use {home} as its home: ")
    assert ran.stderr.count("\n") == 1 and "Not a directory" in ran.stderr


@pytest.mark.parametrize("command", ["status", "terminate", "restart", "purge"])
@pytest.mark.parametrize("instance_id", ["", "  "])
def test_a_blank_instance_id_is_refused_before_any_request(
    command: str, instance_id: str, webhook_answers: Callable[[Answer], None]
) -> None:
    """`fanout status ''` (or terminate, restart, purge; or only spaces): exit 2 in one line, nothing sent."""
    sent: list[httpx.Request] = []

    def redirected(request: httpx.Request) -> httpx.Response:  # what /api/instances/ answers
        sent.append(request)
        return httpx.Response(307, headers={"Location": f"{WEBHOOK}/api/instances"})

    webhook_answers(redirected)
    ran = CliRunner().invoke(app, [command, instance_id, "--url", WEBHOOK], env=ENV)
    assert (ran.exit_code, sent) == (REFUSED, [])
    assert ran.stderr == f"fanout: bad input: the instance id is empty or only spaces: {instance_id!r}\n"


def test_results_refuses_a_blank_instance_id_before_reading_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """`fanout results ''` says the id is empty (not "no results recorded") and exits 2, reading nothing."""
    monkeypatch.setattr(checkpoints, "result_storage", lambda settings: pytest.fail("result storage was read"))
    ran = CliRunner().invoke(app, ["results", ""], env=ENV)
    assert (ran.exit_code, ran.stderr) == (REFUSED, "fanout: bad input: the instance id is empty or only spaces: ''\n")

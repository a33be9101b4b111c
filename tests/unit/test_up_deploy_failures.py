"""`fanout up` that cannot make its deployments says why in one line and exits 1, with no traceback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fanout.cli.cli import app
from fanout.cli.exit_codes import FAILED
from fanout.localstack import up
from fanout.localstack.processes import PrefectServer
from fanout.localstack.stack import DEPLOY_LOG, DeployFailed, LocalStack, deploy_failure

PREFECT_DEPLOY_OUTPUT = """Traceback (most recent call last):
  File "prefect/cli/deploy.py", line 1, in deploy
    raise ScriptError(...)
prefect.exceptions.ScriptError: Script at 'flows/missing.py' encountered an exception: FileNotFoundError
"""


def test_a_failed_prefect_deploy_is_one_line_quoting_its_error_and_naming_the_log(tmp_path: Path) -> None:
    """Prefect's multi-line output becomes one line with its last line, the error; the log keeps it all."""
    log = tmp_path / "logs" / DEPLOY_LOG
    failure = deploy_failure("`prefect deploy` in /project (exit code 1)", PREFECT_DEPLOY_OUTPUT, log)
    assert "\n" not in str(failure)
    assert "exit code 1) failed: prefect.exceptions.ScriptError: Script at 'flows/missing.py'" in str(failure)
    assert str(failure).endswith(f"(full output: {log})")
    assert log.read_text() == PREFECT_DEPLOY_OUTPUT


def test_a_very_long_error_line_is_cut_short(tmp_path: Path) -> None:
    """A reason of thousands of characters is cut, so the line stays readable; the log has it whole."""
    failure = deploy_failure("deploying", "x" * 5000, tmp_path / DEPLOY_LOG)
    assert len(str(failure)) < 500 and "xxx..." in str(failure)


class Refusing(BaseHTTPRequestHandler):
    """Answers every call 401, as a Prefect API with auth on answers a client without its auth string."""

    def answer(self) -> None:
        body = b'{"exception_message": "Unauthorized"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_PATCH = answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: the test reads the client's side."""


@pytest.fixture
def refusing_api() -> Iterator[int]:
    """The port of an in-process HTTP listener that refuses every call with 401."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)  # stops within 0.01 s
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_deploying_to_a_prefect_api_that_refuses_is_one_deploy_failed_line(tmp_path: Path, refusing_api: int) -> None:
    """The seed's deployments against an API that answers 401: `DeployFailed` in one line, saying so."""
    stack = LocalStack(home=tmp_path, server=PrefectServer(home=tmp_path / "prefect", port=refusing_api))
    with pytest.raises(DeployFailed, match=r"deploying to the Prefect API at http://127\.0\.0\.1:\d+/api") as failed:
        stack.deploy()
    assert "\n" not in str(failed.value) and "401 Unauthorized" in str(failed.value)
    assert "Unauthorized" in (tmp_path / "logs" / DEPLOY_LOG).read_text()


def test_fanout_up_that_fails_to_deploy_exits_1_with_one_line_and_no_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI reports a failed deploy as every other failure: `fanout: <why>` on stderr, exit code 1."""
    reason = deploy_failure("`prefect deploy` in /p (exit code 1)", PREFECT_DEPLOY_OUTPUT, tmp_path / DEPLOY_LOG)

    def failing_up(*args: object, **kwargs: object) -> int:
        raise reason

    monkeypatch.setattr(up, "up", failing_up)
    monkeypatch.chdir(tmp_path)  # no prefect.yaml here: the seed's deployments
    ran = CliRunner().invoke(app, ["up", "--home", str(tmp_path / "home")], env={"FANOUT_WEBHOOK_TOKEN": "t" * 20})
    assert ran.exit_code == FAILED
    assert ran.stderr == f"fanout: {reason}\n"
    assert isinstance(ran.exception, SystemExit)  # an exit with a message, not an exception escaping

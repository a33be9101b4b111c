"""The dev stack's home is owner-only: folders 0700, files 0600, and what its processes create too."""

from __future__ import annotations

import shlex
import stat
from pathlib import Path

import pytest

from fanout.localstack.permissions import make_private
from fanout.localstack.processes import PrefectServer
from fanout.localstack.stack import ensure_token
from fanout.localstack.up import banner


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_make_private_closes_an_open_home(tmp_path: Path) -> None:
    """A home made with a loose umask ends 0700, its folders 0700 and its files 0600."""
    home = tmp_path / ".fanout"
    (home / "prefect" / "storage").mkdir(parents=True, mode=0o755)
    (home / "prefect" / "prefect.db").write_text("")
    (home / "prefect" / "storage" / "journal-1").write_text("")
    for path in (home, home / "prefect", home / "prefect" / "storage"):
        path.chmod(0o755)
    make_private(home)
    assert mode(home) == 0o700
    assert {mode(path) for path in home.rglob("*") if path.is_dir()} == {0o700}
    assert {mode(path) for path in home.rglob("*") if path.is_file()} == {0o600}


def test_a_home_another_user_must_enter_is_only_passable(tmp_path: Path) -> None:
    """With `pass_through` (PostgreSQL run as its own user) the home is 0711: no listing, no reading."""
    home = tmp_path / ".fanout"
    make_private(home, pass_through=True)
    assert mode(home) == 0o711


def test_the_generated_webhook_token_is_owner_only(tmp_path: Path) -> None:
    """The token `fanout up` generates is readable by its owner alone."""
    ensure_token(tmp_path / ".fanout", environ={})
    assert mode(tmp_path / ".fanout" / "webhook-token") == 0o600


def test_the_command_that_shows_the_token_quotes_its_path(tmp_path: Path) -> None:
    """A home with a space in its path: the `cat` command `fanout up` prints reads the token when pasted."""
    home = tmp_path / "with space" / ".fanout"
    token, where = ensure_token(home, environ={})
    command, path = shlex.split(where)
    assert (command, Path(path).read_text().strip()) == ("cat", token)


class FakeStack:
    ui_url = "http://127.0.0.1:1"
    api_url = "http://127.0.0.1:1/api"
    webhook_url = "http://127.0.0.1:2"
    project: Path | None = None

    def pools(self) -> list[str]:
        return ["mine", "other"]


def test_the_banner_says_where_the_prefect_auth_string_is() -> None:
    """With auth on, `fanout up` prints where the Prefect auth string is kept."""
    lines = banner(FakeStack(), "cat token", None, ("fanout:secret", "cat /x/prefect-auth"))  # type: ignore[arg-type]
    assert any(line.startswith("Prefect auth: cat /x/prefect-auth") for line in lines)
    assert not any("fanout:secret" in line for line in lines)


def test_the_banner_says_when_the_prefect_api_is_open() -> None:
    """With --no-auth, `fanout up` says the Prefect API is open to anyone on the machine."""
    lines = banner(FakeStack(), "cat token", None, None)  # type: ignore[arg-type]
    assert "Prefect auth: off (--no-auth): anyone on this machine can call the Prefect API" in lines


def test_an_open_server_drops_an_inherited_auth_string(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`--no-auth` starts the server without PREFECT_SERVER_API_AUTH_STRING, even one in the caller's environment."""
    monkeypatch.setenv("PREFECT_SERVER_API_AUTH_STRING", "someone:else")
    assert "PREFECT_SERVER_API_AUTH_STRING" not in PrefectServer(home=tmp_path).server_env()
    assert PrefectServer(home=tmp_path, auth_string="a:b").server_env()["PREFECT_SERVER_API_AUTH_STRING"] == "a:b"


def test_clients_of_a_server_without_csrf_protection_ask_for_no_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The local server does not protect against CSRF, so what talks to it asks for no CSRF token."""
    monkeypatch.delenv("PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED", raising=False)
    monkeypatch.delenv("PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", raising=False)
    assert PrefectServer(home=tmp_path).client_env()["PREFECT_CLIENT_CSRF_SUPPORT_ENABLED"] == "false"


def test_clients_of_a_server_told_to_protect_against_csrf_keep_asking_for_tokens(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED=true: the clients keep Prefect's CSRF support."""
    monkeypatch.setenv("PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED", "true")
    monkeypatch.delenv("PREFECT_CLIENT_CSRF_SUPPORT_ENABLED", raising=False)
    assert "PREFECT_CLIENT_CSRF_SUPPORT_ENABLED" not in PrefectServer(home=tmp_path).client_env()


def test_the_stack_s_server_starts_with_the_local_server_s_defaults(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The server `fanout up` starts gets the local server's task-run recorder batching in its environment."""
    monkeypatch.delenv("PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE", raising=False)
    assert PrefectServer(home=tmp_path).server_env()["PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE"] == "100"


def test_the_banner_of_a_project_says_how_to_start_its_deployments() -> None:
    """In a project, `fanout up` names its prefect.yaml and pools, and the route that starts any of its flows."""
    stack = FakeStack()
    stack.project = Path("/work/project")
    lines = banner(stack, "cat token", None, None)  # type: ignore[arg-type]
    assert "Project:      /work/project/prefect.yaml (a warm worker on mine, other)" in lines
    assert any(
        line.startswith("Start:        POST http://127.0.0.1:2/runtime/webhooks/durabletask/orchestrators/")
        for line in lines
    )
    assert not any(line.startswith("Try:") for line in lines) and lines[-1] == "Ctrl-C stops everything."

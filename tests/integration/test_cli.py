"""`fanout run`: output on stdout, exit codes 0 / 1 / 2. The command's own process is run where it is the
behaviour (its output and stderr as a user sees them); its decisions are checked in this process (`cli_here`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def test_run_prints_the_seeds_output_as_json(cli) -> None:
    """`fanout run` prints the five ordered results and exits 0."""
    done = cli("run")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [f"Processed item-{i}" for i in range(1, 6)]


def test_explicit_items_are_run_in_order(cli_here) -> None:
    """`--item` may repeat; output follows the given order."""
    done = cli_here("run", "--item", "b", "--item", "a")
    assert json.loads(done.stdout) == ["Processed b", "Processed a"]


def test_failed_items_exit_1_and_are_named(monkeypatch: pytest.MonkeyPatch, cli_here, execution_log: Path) -> None:
    """A run with a permanently failing item exits 1 and stderr names it."""
    monkeypatch.setenv("FANOUT_TEST_FAIL", "item-2")
    done = cli_here("run", "--count", "3")
    assert done.returncode == 1
    assert "item-2: ValueError: item-2 is broken" in done.stderr and done.stdout == ""


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--count", "0"], {}, "count must be at least 1"),
        (["--count", "-2"], {}, "count must be at least 1"),
        (["--count", "11"], {"FANOUT_MAX_ITEMS": "10"}, "exceeds max_items"),
        (["--count", "2", "--item", "a"], {}, "not count and items"),
        (["--item", "a", "--item", "a"], {}, "occur more than once"),
        (["--instance-id", "bad id"], {}, "instance_id"),
        ([], {"FANOUT_PROCESSOR": "missing_mod:fn"}, "missing_mod"),
        ([], {"FANOUT_MAX_PARALLEL": "0"}, "max_parallel"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    monkeypatch: pytest.MonkeyPatch, cli_here, execution_log: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    """Bad input or configuration exits 2, says what is wrong, and starts no item."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    done = cli_here("run", *args)
    assert done.returncode == 2 and message in done.stderr
    assert list(execution_log.iterdir()) == []


def test_a_completed_run_writes_no_warning_or_error(cli) -> None:
    """A run that completes writes Prefect's INFO lines on stderr and no WARNING or ERROR line (its last events are sent before it exits)."""
    done = cli("run", "--count", "20")
    assert done.returncode == 0, done.stderr
    noisy = [line for line in done.stderr.splitlines() if "| WARNING" in line or "| ERROR" in line]
    assert noisy == [], done.stderr


def test_a_bad_webhook_setting_does_not_stop_a_flow_run(monkeypatch: pytest.MonkeyPatch, cli_here) -> None:
    """The flow process reads only the flow's settings: a placeholder webhook token and an impossible
    webhook port, which would stop the webhook, leave `fanout run` to complete."""
    monkeypatch.setenv("FANOUT_WEBHOOK_TOKEN", "changeme")
    monkeypatch.setenv("FANOUT_WEBHOOK_PORT", "-1")
    done = cli_here("run", "--count", "2")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["Processed item-1", "Processed item-2"]


def test_the_webhook_client_commands_do_not_import_prefect() -> None:
    """`fanout status`, `list`, `start` and the like only speak HTTP: loading the CLI leaves Prefect unimported,
    while the public API still hands out `durable_map` on first use."""
    probe = (
        "import sys, fanout.cli.cli; before = 'prefect' in sys.modules; "
        "from fanout import durable_map; print(before, 'prefect' in sys.modules, durable_map.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["False", "True", "durable_map"]

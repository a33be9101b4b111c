"""`fanout run` and `fanout start` take their items from a generator, as a request's `source` can; `fanout start --input`
starts another flow's deployment with any JSON input."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from fanout.cli.cli import app
from fanout.cli.results_cli import source_option
from fanout.inputs.sources import ItemSource
from fanout.service import client as start_client


def test_a_generator_and_its_params_become_the_request_source() -> None:
    """`--generator m:f --param n=3 --param base=http://x` is `{"generator": "m:f", "params": {"n": 3, ...}}`."""
    source = source_option(None, None, "flows.http_enrich:urls", ["n=3", "base=http://x", 'tags=["a"]'])
    assert source == ItemSource(generator="flows.http_enrich:urls", params={"n": 3, "base": "http://x", "tags": ["a"]})


@pytest.mark.parametrize(
    ("uri", "generator", "params"),
    [(None, None, ["n=3"]), (None, "m:f", ["no-equals"]), ("items.jsonl", "m:f", None), (None, "not a name", None)],
)
def test_a_generator_option_that_makes_no_source_exits_2(
    uri: str | None, generator: str | None, params: list[str] | None
) -> None:
    """`--param` without `--generator`, a param that is not NAME=VALUE, both kinds, or a bad name: exit 2."""
    with pytest.raises(typer.Exit) as exited:
        source_option(uri, None, generator, params)
    assert exited.value.exit_code == 2


def test_start_sends_the_generator_source_to_the_webhook(monkeypatch: pytest.MonkeyPatch) -> None:
    """`fanout start --generator ... --param ...` posts the source in the body, as the HTTP request takes it."""
    sent: list[dict[str, Any]] = []

    def post(client: httpx.Client, body: dict[str, Any], key: str | None, deployment: str | None) -> dict[str, Any]:
        sent.append(body)
        return {"id": "i1", "statusQueryGetUri": "http://webhook.test/api/instances/i1"}

    monkeypatch.setattr(start_client, "start", post)
    argv = ["start", "--url", "http://webhook.test", "--generator", "flows.http_enrich:urls", "--param", "n=4"]
    ran = CliRunner().invoke(app, [*argv, "--item-key", "id"], env={"FANOUT_WEBHOOK_TOKEN": "t" * 20})
    assert ran.exit_code == 0, ran.output
    assert sent == [{"source": {"generator": "flows.http_enrich:urls", "params": {"n": 4}}, "item_key": "id"}]


def test_start_sends_another_flow_its_json_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """`fanout start --deployment D --input '"/home/site"'` posts that JSON value to D's route as the body."""
    sent: list[tuple[Any, str | None]] = []

    def post(client: httpx.Client, body: Any, key: str | None, deployment: str | None) -> dict[str, Any]:
        sent.append((body, deployment))
        return {"id": "i1", "statusQueryGetUri": "http://webhook.test/api/instances/i1"}

    monkeypatch.setattr(start_client, "start", post)
    argv = ["start", "--url", "http://webhook.test", "--deployment", "backup-site-content", "--input", '"/home/site"']
    ran = CliRunner().invoke(app, argv, env={"FANOUT_WEBHOOK_TOKEN": "t" * 20})
    assert ran.exit_code == 0, ran.output
    assert sent == [("/home/site", "backup-site-content")]


@pytest.mark.parametrize(
    "extra",
    [
        ["--input", "{}"],
        ["--deployment", "d", "--input", "not json"],
        ["--deployment", "d", "--input", "1", "--count", "2"],
    ],
)
def test_an_input_without_a_deployment_or_beside_the_seed_options_exits_2(extra: list[str]) -> None:
    """`--input` needs `--deployment`, must be JSON, and replaces the seed's options: else exit 2, nothing sent."""
    ran = CliRunner().invoke(
        app, ["start", "--url", "http://webhook.test", *extra], env={"FANOUT_WEBHOOK_TOKEN": "t" * 20}
    )
    assert ran.exit_code == 2 and "--input" in ran.output

"""The workload side of the `fanout` CLI: `fanout results ID` (JSONL on stdout), and `--source` for `fanout run`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from fanout.cli.exit_codes import REFUSED, checked, fail
from fanout.cli.options import named_instance
from fanout.core.settings import ItemSettings
from fanout.inputs.sources import ItemSource


def results(
    instance_id: Annotated[str, typer.Argument(callback=named_instance, help="The instance whose results to print.")],
) -> None:
    """Print an instance's results in item order as JSON lines (also while it runs; exit 2 if unknown)."""
    from fanout.storage.checkpoints import result_storage
    from fanout.storage.instance_results import InstanceResults
    from fanout.storage.results import NoResults

    try:
        rows = InstanceResults(result_storage(checked(ItemSettings)), instance_id).rows()
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
    except NoResults as error:
        fail(f"{error}", REFUSED)


def source_option(
    uri: str | None,
    source_format: str | None,
    generator: str | None = None,
    params: list[str] | None = None,
) -> ItemSource | None:
    """`--source PATH [--format F]` or `--generator module:function [--param NAME=VALUE ...]` as the request's
    `source`; `--format` or `--param` alone, or both kinds at once, is a mistake (exit 2, saying why)."""
    if uri is None and generator is None:
        if source_format is not None or params:
            fail("bad input: --format needs --source, and --param needs --generator", REFUSED)
        return None
    fields: dict[str, Any] = {"uri": uri, "format": source_format, "generator": generator}
    if params:
        fields["params"] = generator_params(params)
    try:
        return ItemSource.model_validate(fields)
    except ValueError as error:
        fail(f"bad input: source: {error}", REFUSED)


def generator_params(pairs: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` pairs as the generator's keyword arguments; a VALUE that is JSON (`10`, `true`,
    `["a"]`) is that value, anything else the string."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name.isidentifier():
            fail(f"bad input: --param {pair!r} is not NAME=VALUE", REFUSED)
        try:
            params[name] = json.loads(raw)
        except ValueError:
            params[name] = raw
    return params

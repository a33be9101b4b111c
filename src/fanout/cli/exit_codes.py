"""The exit codes every `fanout` command shares, and the one way a command stops with a message.

0  done
1  failed: the run failed, or the webhook, Prefect or a process of the stack is unavailable
2  refused before anything ran: bad input or configuration, an unknown instance, one not in a state for it
"""

from __future__ import annotations

from typing import NoReturn

import typer
from pydantic import ValidationError

from fanout.core.settings import Settings, read

FAILED = 1
REFUSED = 2


def fail(message: str, code: int) -> NoReturn:
    """Say `fanout: <message>` on stderr, in one line, and exit with `code`."""
    typer.echo(f"fanout: {message}", err=True)
    raise typer.Exit(code)


def problems(error: ValidationError) -> str:
    """A validation error's problems in one line: `field: message; ...`."""
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'request'}: {problem['msg']}" for problem in error.errors()
    )


def checked(kind: type[Settings]) -> Settings:
    """The settings `kind` as the environment sets them, or exit 2 saying which setting is wrong."""
    try:
        return read(kind)
    except ValidationError as error:
        fail(f"bad configuration: {problems(error)}", REFUSED)

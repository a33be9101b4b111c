"""What the local stack needs to be like production: a Prefect auth string, and PostgreSQL on request.

The auth string (on unless `fanout up --no-auth`) is `PREFECT_SERVER_API_AUTH_STRING`
if set, else generated once into `<home>/prefect-auth` (readable only by its owner);
the stack hands it to the server, the workers and the webhook. The database
(`fanout up --database postgres`) is a private PostgreSQL cluster in
`<home>/postgres` (src/fanout/localstack/postgres.py), kept between runs of `fanout up` and
stopped when it exits.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from fanout.localstack.postgres import running_postgres
from fanout.localstack.stack import ensure_secret

AUTH_FILE = "prefect-auth"
DATABASES = ("sqlite", "postgres")


def ensure_auth_string(home: Path, environ: Mapping[str, str] = os.environ) -> tuple[str, str]:
    """The Prefect API auth string (`user:secret`) and where a client finds it."""
    return ensure_secret(
        home, environ, "PREFECT_SERVER_API_AUTH_STRING", AUTH_FILE, lambda: f"fanout:{secrets.token_urlsafe(24)}"
    )


@contextmanager
def stack_database(home: Path, database: str, database_url: str | None) -> Iterator[str | None]:
    """The Prefect database URL for the stack: the given URL, SQLite (None), or a local PostgreSQL
    in `<home>/postgres` that runs while the context is open."""
    if database not in DATABASES:
        raise ValueError(f"database must be one of {', '.join(DATABASES)}, got {database!r}")
    if database == "sqlite" or database_url:
        yield database_url
        return
    with running_postgres(home.resolve() / "postgres") as cluster:
        yield cluster.database_url()

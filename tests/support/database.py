"""A migrated Prefect database for the suite's SQLite servers: made once per test session, copied into each
new server's home, so a server starts without running Prefect's migrations (most of a fresh start). The
template also holds Prefect's block types, registered once: a server started on a copy is told not to
register them again (`SEEDED_SERVER_ENV`).

`prefect_test_harness` (the integration tier's server) makes its database in a folder of its own
(`tempfile.mkdtemp`, as `prefect-test.db`): `seeded_harness_folders` puts the template there first.

The template is made by the installed Prefect (its file name carries the version), with its migrations and
then the block registration a server runs at start, by the first test process that needs one, under a
lock; the others wait and copy it. A copy is written under a temporary name and renamed into place, so a
server never opens half a file. PostgreSQL servers, and a home that already has a database, are left alone.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

from tests.support.paths import SESSION_FOLDER_ENV

DATABASE_FILE = "prefect.db"
"""Where a Prefect server on SQLite keeps its database, inside its PREFECT_HOME (Prefect's default)."""
HARNESS_DATABASE_FILE = "prefect-test.db"
"""Where `prefect_test_harness` keeps its server's database, inside the folder it makes."""
SEEDED_SERVER_ENV = {
    "PREFECT_API_BLOCKS_REGISTER_ON_START": "false",
    "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
}
"""What a server on a copy of the template starts with: its block types are in the copy already, so it
neither registers them nor imports the installed collections (Dask's among them) to see whether it must."""
MAKE_TEMPLATE = """
import asyncio
import prefect.plugins
from prefect.server.database import provide_database_interface
from prefect.server.models.block_registration import run_block_auto_registration

async def main():
    database = provide_database_interface()
    await database.create_db()
    prefect.plugins.load_prefect_collections()
    async with await database.session() as session:
        await run_block_auto_registration(session=session)

asyncio.run(main())
"""
"""A server's first start without its serving: migrate a fresh database, then register every block type
(Prefect's own and its installed collections'), as the lifespan of Prefect's server app does."""


def make_template(folder: Path) -> Path:
    """`folder/prefect-<version>.db`, migrated to the installed Prefect's schema; made now if missing."""
    import prefect

    folder.mkdir(parents=True, exist_ok=True)
    template = folder / f"prefect-{prefect.__version__}.db"
    with locked(folder / "template.lock"):
        if not template.exists():
            _migrate_into(template)
    return template


def _migrate_into(template: Path) -> None:
    """Migrate a fresh database in a scratch home and register the block types, then rename it to `template`."""
    with tempfile.TemporaryDirectory(dir=template.parent) as scratch:
        env = {name: value for name, value in os.environ.items() if not name.startswith("PREFECT_")}
        env |= {"PREFECT_HOME": scratch, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        argv = [sys.executable, "-c", MAKE_TEMPLATE]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"making the template database failed:\n{done.stdout}{done.stderr}")
        os.replace(Path(scratch) / DATABASE_FILE, template)


def seed_database(prefect_home: Path, template: Path | None = None) -> dict[str, str]:
    """Copy a migrated database (`template`, else the session's) into `prefect_home` when it has none yet;
    outside a test session, with no template given, nothing. Returns what to add to the environment of a
    server on that home: `SEEDED_SERVER_ENV` when its database is a copy, or one a server made before
    (which registered the block types then)."""
    target = prefect_home / DATABASE_FILE
    folder = os.environ.get(SESSION_FOLDER_ENV)
    if target.exists():
        return dict(SEEDED_SERVER_ENV)
    if template is None and not folder:
        return {}
    template = template or make_template(Path(str(folder)))
    prefect_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = target.with_name(f".{DATABASE_FILE}.partial")
    shutil.copyfile(template, partial)
    partial.chmod(0o600)
    os.replace(partial, target)
    return dict(SEEDED_SERVER_ENV)


@contextmanager
def seeded_harness_folders() -> Iterator[None]:
    """While open, the folder `prefect_test_harness` makes for its database already holds a migrated copy
    (the session's template), and the servers this process starts skip the block registration, so the
    harness's server starts without either; the harness is otherwise untouched. Where other servers start
    in the same process, open it only while the harness starts. Outside a test session, or on a Prefect
    whose harness makes its folder another way, nothing changes."""
    from prefect.testing import utilities

    folder = os.environ.get(SESSION_FOLDER_ENV)
    if not folder or getattr(utilities, "mkdtemp", None) is not tempfile.mkdtemp:
        yield
        return
    template = make_template(Path(folder))

    def seeded_mkdtemp() -> str:
        made = tempfile.mkdtemp()
        shutil.copyfile(template, Path(made) / HARNESS_DATABASE_FILE)
        return made

    with mock.patch.object(utilities, "mkdtemp", seeded_mkdtemp), mock.patch.dict(os.environ, SEEDED_SERVER_ENV):
        yield


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (one test process makes the template; the others wait for it)."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

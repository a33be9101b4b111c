"""A private PostgreSQL cluster for development and tests: initdb + pg_ctl on a loopback port.

It runs the machine's own PostgreSQL binaries in a folder of ours, listening on 127.0.0.1 only, with a
password-protected role and one database, and never touches a system-wide cluster. As root, every
PostgreSQL command runs as the `postgres` user, since PostgreSQL refuses to run as root. PostgreSQL binds
its port itself (it cannot be handed a socket), so a start that finds its free port taken meanwhile
is tried again on another.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fanout.localstack.processes import LOOPBACK, PortTaken, free_port

SERVICE_USER = "postgres"
ROLE = "fanout"
DATABASE = "prefect"
PORT_ATTEMPTS = 5
"""Free ports tried in turn when another program takes each one between our choice and PostgreSQL's bind."""
PORT_CLASH = "Address already in use"
"""What PostgreSQL logs when the port it was given is held by another program."""


class PostgresNotAvailable(RuntimeError):
    """PostgreSQL's server binaries (initdb, pg_ctl) are not installed."""


def start_on_a_port(
    start: Callable[[int], bool], asked: int, choose: Callable[[], int] = free_port, attempts: int = PORT_ATTEMPTS
) -> int:
    """The port a server started on: `asked`, else (0) a free one. PostgreSQL binds its port itself, so
    a free port can be taken by another program before it does: `start(port)` answers False on such a
    clash, and the next free port is tried. `PortTaken` in one line when the asked port is taken, or
    every try lost its race."""
    for _ in range(attempts if asked == 0 else 1):
        port = asked or choose()
        if start(port):
            return port
    if asked:
        raise PortTaken(f"PostgreSQL could not listen on port {asked} on {LOOPBACK}: another program holds it")
    raise PortTaken(f"PostgreSQL found each of {attempts} free ports taken by another program before it bound it")


def binary_dir() -> Path:
    """The folder holding initdb and pg_ctl: next to `pg_ctl` on PATH, else Debian's newest version."""
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    if versions:
        return Path(versions[-1]).parent
    raise PostgresNotAvailable(
        "PostgreSQL server binaries not found; install them (Debian: apt-get install postgresql)"
    )


def _as_service_user(argv: Sequence[str]) -> list[str]:
    """`argv`, run as the `postgres` user when we are root (PostgreSQL refuses root)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", SERVICE_USER, "--", *argv]
    return list(argv)


def _hand_over(path: Path) -> None:
    """Give `path` to the `postgres` user when we are root, so the server can own its files."""
    if os.geteuid() == 0:
        shutil.chown(path, user=SERVICE_USER, group=SERVICE_USER)


@dataclass
class LocalPostgres:
    """One PostgreSQL cluster in `folder` (data, log, password), serving one database on loopback."""

    folder: Path
    port: int = 0
    """0: a free port, chosen as the server starts."""
    password: str = ""

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log_path(self) -> Path:
        return self.folder / "postgres.log"

    @property
    def password_file(self) -> Path:
        return self.folder / "password"

    def database_url(self, driver: str = "postgresql+asyncpg") -> str:
        """The SQLAlchemy URL of the database, as Prefect's server expects it."""
        return f"{driver}://{ROLE}:{self.password}@{LOOPBACK}:{self.port}/{DATABASE}"

    def _run(self, *argv: str, timeout: float = 120.0) -> None:
        command = _as_service_user([str(binary_dir() / argv[0]), *argv[1:]])
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, env={**os.environ, "PGPASSWORD": self.password}
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stderr or done.stdout}")

    def initialise(self) -> None:
        """Create the cluster (once) with a scram-protected role; later starts reuse it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        _hand_over(self.folder)
        reachable = subprocess.run(_as_service_user(["test", "-w", str(self.folder)]), check=False)
        if reachable.returncode != 0:
            raise PostgresNotAvailable(
                f"the {SERVICE_USER} user cannot write to {self.folder}; use a folder it can reach (e.g. under /tmp)"
            )
        if (self.data_dir / "PG_VERSION").exists():
            self.password = self.password_file.read_text().strip()
            return
        self.password = secrets.token_urlsafe(18)
        self.password_file.write_text(self.password + "\n")
        self.password_file.chmod(0o600)
        _hand_over(self.password_file)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            ROLE,
            "--auth=scram-sha-256",
            f"--pwfile={self.password_file}",
            "--encoding=UTF8",
            "--no-instructions",
        )

    def start(self) -> LocalPostgres:
        """Initialise if needed, start the server on loopback only and create the database.

        A server still running on this folder (its owner was killed, say) is reused on its port.
        """
        self.initialise()
        running = self.running_port()
        self.port = running if running is not None else start_on_a_port(self._start_server, self.port)
        if not self._database_exists():
            self._run("createdb", "-h", LOOPBACK, "-p", str(self.port), "-U", ROLE, DATABASE)
        return self

    def _start_server(self, port: int) -> bool:
        """Start the server on `port` and wait until it is ready (pg_ctl's `-w` reads its pid file, so
        what answers is ours); False when another program holds the port."""
        options = f"-p {port} -c listen_addresses={LOOPBACK} -c unix_socket_directories='' -c max_connections=200"
        logged = self.log_path.stat().st_size if self.log_path.exists() else 0
        try:
            self._run(
                "pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w", "-t", "60"
            )
        except RuntimeError:
            with self.log_path.open(errors="replace") as log:
                log.seek(logged)
                if PORT_CLASH in log.read():
                    return False
            raise
        return True

    def running_port(self) -> int | None:
        """The port of a server already running on this cluster's folder, if any."""
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        status = subprocess.run(
            _as_service_user([str(binary_dir() / "pg_ctl"), "status", "-D", str(self.data_dir)]),
            capture_output=True,
            text=True,
            timeout=30,
        )
        if status.returncode != 0:
            return None
        lines = pid_file.read_text().splitlines()
        return int(lines[3]) if len(lines) > 3 and lines[3].strip().isdigit() else None

    def _database_exists(self) -> bool:
        command = _as_service_user(
            [
                str(binary_dir() / "psql"),
                "-h",
                LOOPBACK,
                "-p",
                str(self.port),
                "-U",
                ROLE,
                "-d",
                "postgres",
                "-tAc",
                f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'",
            ]
        )
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=30, env={**os.environ, "PGPASSWORD": self.password}
        )
        return done.stdout.strip() == "1"

    def query(self, sql: str) -> str:
        """Run one SQL statement in the database and return psql's unaligned output (for checks)."""
        command = _as_service_user(
            [str(binary_dir() / "psql"), "-h", LOOPBACK, "-p", str(self.port), "-U", ROLE, "-d", DATABASE, "-tAc", sql]
        )
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, "PGPASSWORD": self.password},
            check=True,
        )
        return done.stdout.strip()

    def stop(self) -> None:
        """Stop the server (fast shutdown: open sessions are ended); a stopped cluster is left as is."""
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "60")


@contextmanager
def running_postgres(folder: Path, port: int | None = None) -> Iterator[LocalPostgres]:
    """A started local PostgreSQL that is stopped on exit, whatever happened inside."""
    cluster = LocalPostgres(folder=folder, port=port or 0)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


@contextmanager
def private_postgres() -> Iterator[LocalPostgres]:
    """A started cluster in a fresh folder under the system's temp dir, stopped and removed on exit,
    whatever happened inside: for tests and benchmarks. The folder is made here rather than taken
    from pytest or `TemporaryDirectory`, whose parents are closed to the `postgres` user."""
    folder = Path(tempfile.mkdtemp(prefix="fanout-pg-"))
    try:
        with running_postgres(folder) as cluster:
            yield cluster
    finally:
        shutil.rmtree(folder, ignore_errors=True)

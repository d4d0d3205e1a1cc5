"""A throwaway PostgreSQL 15 on 127.0.0.1 (the Debian package), for tests and benchmarks.

Run as root: the server runs as the ``postgres`` user, in a directory of its own outside pytest's
root-only temporary tree.
"""

from __future__ import annotations

import atexit
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, text

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*argv: str, check: bool = True) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=check, capture_output=True, timeout=120)


@dataclass
class Postgres:
    """A throwaway PostgreSQL server that a test can stop and start again (an outage)."""

    url: str
    base: Path
    port: int

    def start(self) -> None:
        """Start the server and wait until it takes connections."""
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=on"
        log = str(self.base / "pg.log")
        _as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.base / "data"), "-o", options, "-l", log, "-w", "start"
        )

    def new_database(self, name: str) -> str:
        """Create an empty database ``name`` on this server; its URL (no schema, no rows, no advisory lock
        held: those are per database)."""
        admin = create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f"CREATE DATABASE {name}"))
        finally:
            admin.dispose()
        return self.url.rsplit("/", 1)[0] + f"/{name}"

    def stop(self, mode: str = "fast", *, check: bool = True) -> None:
        """Stop the server (``fast``: as an operator's restart; ``immediate``: as a crash)."""
        _as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.base / "data"), "-m", mode, "-w", "stop", check=check
        )


_INITDB: list[Path] = []  # the one cluster initdb made in this process, copied for each server


def _initdb_once() -> Path:
    """A freshly initdb'd cluster, made once per process and removed at its exit: a copy of it is the same
    new cluster for a fraction of initdb's second or more."""
    if not _INITDB:
        base = Path(tempfile.mkdtemp(prefix="gpuwarden-pg-initdb-"))
        atexit.register(shutil.rmtree, base, ignore_errors=True)
        shutil.chown(base, "postgres", "postgres")
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(base / "data"), "-A", "trust", "-U", "postgres")
        _INITDB.append(base)
    return _INITDB[0]


@contextmanager
def throwaway_postgres(port: int) -> Iterator[Postgres]:
    """A new PostgreSQL cluster listening on ``port``, started; stopped and deleted at the end.

    Raises ``FileNotFoundError`` when PostgreSQL 15 is not installed (``make deps`` installs it).
    """
    if not (PG_BIN / "initdb").exists():
        raise FileNotFoundError(f"{PG_BIN / 'initdb'}: PostgreSQL 15 is not installed; run `make deps`")
    base = Path(tempfile.mkdtemp(prefix="gpuwarden-pg-"))
    try:
        shutil.chown(base, "postgres", "postgres")  # the postgres user must reach its data directory
        _as_postgres("cp", "-a", str(_initdb_once() / "data"), str(base / "data"))
        server = Postgres(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", base, port)
        server.start()
        try:
            yield server
        finally:
            server.stop("immediate", check=False)  # the test may have stopped it already
    finally:
        shutil.rmtree(base, ignore_errors=True)

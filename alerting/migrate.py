"""Schema migrations, run programmatically (no alembic.ini at runtime)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import cast

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from alerting.db import DEFAULT_CONNECT_TIMEOUT, SQLITE_BUSY_SECONDS, make_engine, store_failure, store_url
from gpuwarden.errors import BUSY, DOWN, ConfigError
from gpuwarden.redaction import hidden_password

MIGRATIONS_DIR = Path(__file__).with_name("migrations")

logger = logging.getLogger(__name__)


class NewerSchema(Exception):
    """The database is at a schema revision this version does not know: a newer gpuwarden migrated it."""

    def __init__(self, revision: str, head: str) -> None:
        super().__init__(
            f"the database was migrated by a newer gpuwarden (schema revision {revision!r} is unknown to this"
            f" version, which knows up to {head!r}); run that newer version, or restore a backup of the"
            " database taken before it was upgraded"
        )
        self.revision = revision
        self.head = head


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migration scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database behind ``engine`` to ``revision`` (idempotent); ``NewerSchema`` if the database
    is at a revision these migrations do not know (gpuwarden was rolled back after an upgrade)."""
    cfg = alembic_config()
    scripts = ScriptDirectory.from_config(cfg)
    with migration_transaction(engine) as connection:
        _check_known(scripts, connection)
        steps = _steps(scripts, connection, revision)
        started = time.monotonic()
        if steps:
            logger.info("store schema: %s", steps)
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)
    if steps:
        logger.info(
            "store schema: now at %s (%.1f s)", _target(scripts, revision), time.monotonic() - started
        )


def _target(scripts: ScriptDirectory, revision: str) -> str:
    """The revision ``revision`` names (``head`` resolved)."""
    return scripts.get_current_head() if revision == "head" else revision  # type: ignore[return-value]


def _steps(scripts: ScriptDirectory, connection: Connection, revision: str) -> str:
    """What an upgrade to ``revision`` will do, said in one line ("" when nothing): alembic's own lines, one
    per migration and two of its dialect, are quieted (``gpuwarden.cli.logs``), so a first start or an upgrade
    logs this, and its end, instead of 24 lines."""
    current = MigrationContext.configure(connection).get_current_revision()
    target = _target(scripts, revision)
    if current == target:
        return ""
    count = sum(1 for _ in scripts.iterate_revisions(target, current))
    plural = "" if count == 1 else "s"
    if current is None:
        return f"new store, creating it at {target} ({count} migration{plural})"
    return f"migrating {current} to {target} ({count} migration{plural}, in one transaction)"


@contextmanager
def migration_transaction(engine: Engine) -> Iterator[Connection]:
    """A connection in one transaction that will hold every statement of an upgrade, DDL included.

    pysqlite's legacy transaction handling sends its own BEGIN only before INSERT/UPDATE/DELETE, so an
    ``ALTER TABLE`` or ``CREATE TABLE`` ran in autocommit, committed at once, outside the transaction of
    the backfill and the version bump: a kill during 0004's backfill left the column added at 0003, and
    every later start failed on it. SQLite's DDL is transactional; SQLAlchemy's documented pysqlite recipe
    (Transactional DDL) turns the driver's BEGIN off and sends one itself, here for this connection only.
    """
    with engine.connect() as connection:
        if connection.dialect.name != "sqlite":
            with connection.begin():
                yield connection
            return
        driver = cast(sqlite3.Connection, connection.connection.driver_connection)
        legacy = driver.isolation_level
        driver.isolation_level = None
        try:
            with connection.begin():
                # IMMEDIATE: the write lock now, waited for as long as busy_timeout, so that a store another
                # process holds in a write transaction (a sqlite3 shell's BEGIN EXCLUSIVE) stops the start
                # (``store_error``: "database is locked", exit 75) instead of a serve that starts but
                # cannot write, never ready; a migration takes that lock anyway, and later.
                connection.exec_driver_sql("BEGIN IMMEDIATE")
                yield connection
        finally:
            driver.isolation_level = legacy


def _check_known(scripts: ScriptDirectory, connection: Connection) -> None:
    """Raise ``NewerSchema`` for a stored revision no migration script here names."""
    known = {script.revision for script in scripts.walk_revisions()}
    for stored in MigrationContext.configure(connection).get_current_heads():
        if stored not in known:
            raise NewerSchema(stored, ", ".join(scripts.get_heads()))


def open_store(url: str, field: str = "api.db", connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> Engine:
    """The store's engine, migrated; what keeps it from opening is a ``ConfigError`` naming ``field``.
    A PostgreSQL connect gives up after ``connect_timeout`` seconds.

    An unknown database, a server that refuses the connection and a SQLite file that cannot be created
    stop ``serve`` with the URL (password hidden) and the reason instead of a traceback.
    """
    try:
        engine = make_engine(url, connect_timeout)
        upgrade(engine)
    except NewerSchema as exc:
        raise ConfigError(f"{hidden_password(url)}: cannot open the store: {exc}", field=field) from exc
    except (ArgumentError, NoSuchModuleError, ModuleNotFoundError, SQLAlchemyError) as exc:
        raise store_error(url, exc, field) from exc
    return engine


def store_error(url: str, exc: Exception, field: str = "api.db") -> ConfigError:
    """The ``ConfigError`` for a store that cannot be used: the URL with its password hidden, and why."""
    shown = hidden_password(url)
    if isinstance(exc, ArgumentError | NoSuchModuleError | ModuleNotFoundError):
        message = (
            f"{shown}: not a database gpuwarden can use ({exc}); give a SQLite path or postgresql+psycopg://"
        )
        return ConfigError(message, field=field)
    return ConfigError(
        f"{shown}: cannot open the store: {store_failure(exc)}{_file_hint(url, exc)}{_locked_hint(exc)}",
        field=field,
        outside=_outside(url, exc),
    )


# SQLSTATE classes of a database server that is there but takes no connection now: connection exception,
# insufficient resources (too many connections), operator intervention (starting up, shutting down).
_SERVER_NOT_NOW = ("08", "53", "57")
# The same in the words libpq passes on from the server at connect, where psycopg gives no SQLSTATE: a
# server that answered "FATAL: password authentication failed" or "database ... does not exist" refuses
# the setting, one that answered these is not ready yet. (A server that says them in another language is
# taken for one that is not ready: restarted, rather than stopped for good.)
_SERVER_NOT_NOW_SAID = (
    "the database system is",
    "too many clients",
    "too many connections",
    "connection slots",
)


def _outside(url: str, exc: Exception) -> str | None:
    """``ConfigError.outside`` of a store that could not be opened: ``DOWN`` for a database server that did
    not answer (refused, timed out, unreachable) or takes no connection now, ``BUSY`` for a SQLite file
    another process holds locked; None for the rest (a password refused, a database that does not exist, a
    file SQLite cannot use), which the next start with the same setting meets again."""
    if _sqlite_locked(exc):
        return BUSY
    cause = getattr(exc, "orig", None) or exc
    try:
        if store_url(url).get_backend_name() == "sqlite":
            return None
    except ArgumentError:
        return None
    if isinstance(cause, OSError):  # a socket's error (TimeoutError, ConnectionRefusedError) before libpq's
        return DOWN
    if not type(cause).__module__.startswith("psycopg"):
        return None
    state = getattr(cause, "sqlstate", None)
    if state is not None:
        return DOWN if state[:2] in _SERVER_NOT_NOW else None
    said = str(cause)
    if "FATAL:" not in said:  # libpq reached no server: refused, timed out, no route, a name not resolved
        return DOWN
    return DOWN if any(words in said for words in _SERVER_NOT_NOW_SAID) else None


def _sqlite_locked(exc: Exception) -> bool:
    """Whether ``exc`` is SQLite's "database is locked": another process held the file past busy_timeout."""
    cause = getattr(exc, "orig", None) or exc
    return isinstance(cause, sqlite3.OperationalError) and "database is locked" in str(cause)


def _locked_hint(exc: Exception) -> str:
    """What to do about a SQLite file another process holds locked, where that is what failed."""
    if not _sqlite_locked(exc):
        return ""
    return (
        " (another process holds a write transaction on the file, a sqlite3 shell left in BEGIN, a backup or"
        f" a script, and did not end it within {SQLITE_BUSY_SECONDS} s; end it, then start again)"
    )


def _file_hint(url: str, exc: Exception) -> str:
    """Why SQLite could not open its file, where that is what failed: a missing or read-only directory.

    Said only then: every other error at open (a failed migration, a locked database) got "does its
    directory exist?" too, which sent people looking at a directory that was there.
    """
    if not isinstance(exc, OSError) and "unable to open database file" not in str(exc):
        return ""
    try:
        parsed = store_url(url)
    except ArgumentError:
        return ""
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return ""
    directory = Path(os.path.realpath(parsed.database)).parent
    if not directory.is_dir():
        return f" (its directory {directory} does not exist)"
    if not os.access(directory, os.W_OK | os.X_OK):
        return f" (its directory {directory} is not writable)"
    return ""

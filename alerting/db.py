"""Database plumbing shared by the incident store and the notification outbox (SQLAlchemy 2)."""

from __future__ import annotations

import logging
import os
import stat
import sys
import weakref
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any, TypeVar

import orjson
from sqlalchemy import URL, Engine, Select, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session
from sqlalchemy.pool import Pool

logger = logging.getLogger(__name__)


class Base(DeclarativeBase):
    """Declarative base for every alerting table (store and outbox)."""


RowT = TypeVar("RowT", bound=Base)
ValueT = TypeVar("ValueT")

IN_LIST_SIZES = (8, 32, 128, 512)
"""The lengths ``in_lists`` gives: a query site sends at most this many SQL texts."""


def in_lists(values: Sequence[ValueT]) -> Iterator[list[ValueT]]:
    """``values`` as the lists of ``column.in_(...)`` queries, each of a length in ``IN_LIST_SIZES``: pieces
    of the largest, the last padded with its last value (which an IN list holding twice changes nothing).

    SQLAlchemy renders ``IN (?, ?, ...)`` with one parameter per value, so one SQL text per list length, and
    every pooled connection keeps each text it ran as a prepared statement (pysqlite's cache: 128 each, as
    big as its list). A hot path's lists of every length from 1 to hundreds filled those caches with
    hundreds of statements (tens of MiB of SQLite heap: benchmarks/README.md, "Serve RSS")."""
    largest = IN_LIST_SIZES[-1]
    for at in range(0, len(values), largest):
        piece = list(values[at : at + largest])
        size = next(s for s in IN_LIST_SIZES if s >= len(piece))
        piece += [piece[-1]] * (size - len(piece))
        yield piece


def write_locked(session: Session) -> None:
    """Make what the session reads from now on part of its write transaction: on SQLite, take the database's
    write lock first (``BEGIN IMMEDIATE``), since pysqlite begins a transaction only at the first write, so
    a read before it would be no part of it; on PostgreSQL the reads lock rows themselves (``FOR UPDATE``)."""
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        dbapi = connection.connection.dbapi_connection
        if dbapi is not None and not dbapi.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def locked_row(session: Session, model: type[RowT], key: str) -> RowT | None:
    """The row of ``model`` whose primary key is ``key`` (None if there is none), read inside the session's
    write transaction and held until it ends, so that a check on it and the write it decides are one step.

    PostgreSQL: ``SELECT ... FOR UPDATE``; a concurrent transaction that changed the row (a retry's first
    attempt whose COMMIT is still in flight) commits first, and this reads what it committed. SQLite: the
    database's write lock first (``write_locked``).
    """
    write_locked(session)
    return session.get(model, key, with_for_update=True, populate_existing=True)


def locked_rows(session: Session, query: Select[RowT]) -> list[RowT]:
    """The rows ``query`` selects, read as ``locked_row`` reads one: a concurrent transaction that changed
    one commits first, and a row it no longer lets ``query`` select is left out (PostgreSQL re-checks the
    ``WHERE`` of a row it waited for), so the rows are still what the query asked for when they are
    written."""
    write_locked(session)
    return list(session.scalars(query.with_for_update().execution_options(populate_existing=True)))


SQLITE_BUSY_SECONDS = 5
"""How long a SQLite statement waits for a lock another connection holds before "database is locked"."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer. In WAL mode synchronous=NORMAL is durable against a crash
    # of the process (SIGKILL: the commit is in the WAL file, in the OS page cache); only a power loss or
    # kernel crash can lose the last commits, which then roll back whole (never a torn incident). FULL
    # adds an fsync to every commit, which capped ingest at the disk's fsync rate.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_SECONDS * 1000}")
    cursor.close()


STORE_FILE_MODE = 0o600
"""A new SQLite store file's mode, whatever the umask: incidents name hosts, jobs and people. SQLite gives
its ``-wal`` and ``-shm`` files the database file's mode."""


def _private_store_files(database: str, *_: Any) -> None:
    """Before SQLite opens ``database``: make it, if new, readable by its owner alone (SQLite made it with
    the umask, 0644, and its WAL and shared-memory files after it); take the permissions of every other user
    (not those of the file's group) from an existing one and its ``-wal``/``-shm``, which an earlier release
    made with the umask. Only ever tightened; what cannot be done is left to SQLite to say when it opens."""
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, STORE_FILE_MODE))
        return
    except OSError:  # there already, or a directory SQLite will refuse itself
        pass
    for path in (database, f"{database}-wal", f"{database}-shm"):
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & stat.S_IRWXO:
                os.chmod(path, mode & ~stat.S_IRWXO)
                logger.warning(
                    "store: %s was open to every user of this machine (mode %04o); now %04o",
                    path,
                    mode,
                    mode & ~stat.S_IRWXO,
                )
        except OSError:  # none (no -wal yet), or not this user's file: as it was
            continue


def _json_dumps(value: Any) -> str:
    # orjson: the labels, annotations and timeline data of every stored alert go through here.
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def store_url(db: str) -> URL:
    """The SQLAlchemy URL of a store URL or plain SQLite path. One that does not parse is an ``ArgumentError``
    (a database gpuwarden cannot use), where make_url raised ValueError (``postgresql://u@[::1/x``), which
    ``serve`` did not expect: a traceback."""
    try:
        return make_url(db if "://" in db else f"sqlite:///{db}")
    except ValueError as exc:
        raise ArgumentError(f"not a valid URL ({exc})") from exc


DEFAULT_CONNECT_TIMEOUT = 10
"""Seconds a PostgreSQL connect may take (``store.connect_timeout_seconds``); psycopg's own default is 130."""

# A connection whose server host vanished (powered off, partitioned: no RST ever comes) otherwise waits for
# an answer until the kernel gives up, hours with Linux's default keepalive of 7,200 s. Probing an idle
# connection after 30 s, every 10 s, 3 times, and dropping one whose sent bytes stay unacknowledged for
# 60 s (TCP_USER_TIMEOUT, libpq's tcp_user_timeout) turns that into an error within about a minute. A
# server busy with a long query still acknowledges probes (its kernel does), so no query is cut short.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # milliseconds
}


def server_connect_args(url: URL, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> dict[str, Any]:
    """libpq parameters for every connection to a PostgreSQL store: a connect gives up after
    ``connect_timeout`` seconds (a host that drops SYNs, or a peer that accepts and never speaks, held a
    connect, and so the journal applier or an API request, about 130 s), and a dead peer is noticed by TCP
    keepalives. Nothing for SQLite, and nothing the URL's query sets itself."""
    if url.get_backend_name() != "postgresql":
        return {}
    wanted: dict[str, Any] = {"connect_timeout": connect_timeout, **_KEEPALIVES}
    # One the URL sets itself (``?connect_timeout=30``) is the operator's choice: connect_args would win.
    return {k: v for k, v in wanted.items() if k not in url.query}


# What a PostgreSQL session reads timestamps in: the server's or the database's own TimeZone and DateStyle
# (postgresql.conf, ALTER DATABASE/ROLE ... SET) reach every session otherwise. psycopg parses timestamptz
# in the ISO DateStyle only (with 'SQL, DMY' serve stopped at start with a traceback), and a zone east of UTC
# renders a silence ending 9999-12-31T23:59:59Z (which the API takes) in year 10000, which Python's datetime
# cannot hold: the silence list answered 503 and serve no longer started.
_SERVER_SESSION = ("SET TIME ZONE 'UTC'", "SET DateStyle TO 'ISO, YMD'")


def _server_session(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        for statement in _SERVER_SESSION:
            cursor.execute(statement)
    finally:
        cursor.close()
    dbapi_connection.commit()  # a SET in a transaction rolled back (the pool's reset) would be undone


def pin_server_session(engine: Engine) -> None:
    """Make every new connection of a PostgreSQL ``engine`` read and write timestamps in UTC and ISO,
    whatever the server's defaults; nothing for SQLite."""
    if engine.dialect.name == "postgresql":
        event.listen(engine, "connect", _server_session)


def store_failure(exc: BaseException) -> str:
    """Why the store failed, in one line: the driver's first line, naming the setting when a connect ran
    out of time (psycopg says only "connection timeout expired")."""
    cause = getattr(exc, "orig", None) or exc
    reason = str(cause).splitlines()[0] if str(cause) else repr(exc)
    # psycopg is loaded by a PostgreSQL engine only (a SQLite store's `serve` starts without it); when it
    # is not loaded, no psycopg exception can be here.
    psycopg_errors = sys.modules.get("psycopg.errors")
    if psycopg_errors is not None and isinstance(cause, psycopg_errors.ConnectionTimeout):
        reason += " (the store did not answer within store.connect_timeout_seconds: is its host up?)"
    return reason


def connection_names(exc: BaseException) -> tuple[str, ...]:
    """The user, database and host a failed PostgreSQL connection used, as psycopg keeps them on its error
    (``pgconn``, under SQLAlchemy's ``orig`` or a ``__cause__``); none for any other error."""
    psycopg_errors = sys.modules.get("psycopg.errors")  # see store_failure
    cause: BaseException | None = exc
    seen: set[int] = set()  # a chain that comes back to itself ends
    while cause is not None and getattr(cause, "pgconn", None) is None and id(cause) not in seen:
        seen.add(id(cause))
        cause = getattr(cause, "orig", None) or cause.__cause__
    pgconn = getattr(cause, "pgconn", None)
    if pgconn is None or psycopg_errors is None:
        return ()
    try:  # a connection closed since: nothing to read
        said = [getattr(pgconn, key) for key in ("user", "db", "host", "hostaddr")]
    except psycopg_errors.Error:
        return ()
    return tuple(value.decode(errors="replace") for value in said if isinstance(value, bytes) and value)


def make_engine(url: str, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> Engine:
    """An engine for a SQLAlchemy URL or a plain SQLite path; SQLite gets WAL, commits survive SIGKILL;
    a PostgreSQL connect gives up after ``connect_timeout`` seconds (``server_connect_args``)."""
    parsed = store_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    engine = create_engine(
        parsed,
        future=True,
        connect_args=server_connect_args(parsed, connect_timeout),
        pool_pre_ping=not sqlite,  # a file cannot drop the connection; a server can
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )
    if sqlite:
        if parsed.database not in (None, "", ":memory:") and "uri" not in parsed.query:  # a file's path
            event.listen(engine, "do_connect", partial(_private_store_files, parsed.database))
        event.listen(engine, "connect", _sqlite_pragmas)
    pin_server_session(engine)
    _close_when_dropped(engine)
    return engine


def _close_when_dropped(engine: Engine) -> None:
    """Close ``engine``'s pooled connections when nothing holds it any more, as ``dispose`` would: dropped
    with them open, each PostgreSQL session stayed open until the garbage collector found the connection
    (psycopg then warns ``was deleted while still open``). Since an ``IncidentEngine`` no longer lives as long
    as its process (fix/fuzz), the engines of those dropped are. The pool is held by a list the
    ``engine_disposed`` event keeps current (``dispose`` makes a new pool), not by the engine."""
    pools: list[Pool] = [engine.pool]

    def disposed(new: Engine) -> None:
        pools[0] = new.pool

    event.listen(engine, "engine_disposed", disposed)
    weakref.finalize(engine, lambda: pools[0].dispose())  # noqa: PLW0108 - the pool then, not now


def close_engine(engine: Engine) -> None:
    """Close every pooled connection of ``engine`` at a clean stop, a SQLite store's WAL first written back
    into its database file, so that the stopped server's ``.db`` alone is the whole store.

    Until SQLite's automatic checkpoint (a WAL of 1,000 pages) or the last connection's close, every commit
    is in the ``-wal`` file only; a process that exits with its pool open leaves it there, and a copy of
    the ``.db`` file (what people take of a stopped server) held no table. A checkpoint that fails or
    cannot finish (a thread still writing) is logged; the store is as safe as before, the WAL beside it.
    """
    if engine.dialect.name == "sqlite":
        try:
            with engine.connect() as conn:
                busy, wal_pages, written = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            if busy:
                logger.warning(
                    "store: checkpoint at stop left %d of %d WAL pages in %s-wal (still in use)",
                    wal_pages - written,
                    wal_pages,
                    engine.url.database,
                )
        except SQLAlchemyError:  # the stop goes on: the WAL still holds every commit
            logger.exception("store: checkpoint at stop failed; the store's WAL file stays beside it")
    engine.dispose()

"""Database plumbing shared by the incident store and the notification outbox (SQLAlchemy 2)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Session


class Base(DeclarativeBase):
    """Declarative base for every alerting table (store and outbox)."""


RowT = TypeVar("RowT", bound=Base)


def locked_row(session: Session, model: type[RowT], key: str) -> RowT | None:
    """The row of ``model`` whose primary key is ``key`` (None if there is none), read inside the session's
    write transaction and held until it ends, so that a check on it and the write it decides are one step.

    PostgreSQL: ``SELECT ... FOR UPDATE``; a concurrent transaction that changed the row (a retry's first
    attempt whose COMMIT is still in flight) commits first, and this reads what it committed. SQLite: the
    database's write lock first (``BEGIN IMMEDIATE``), since pysqlite begins a transaction only at the first
    write, so the read before it would be no part of it.
    """
    connection = session.connection()
    if connection.dialect.name == "sqlite":
        dbapi = connection.connection.dbapi_connection
        if dbapi is not None and not dbapi.in_transaction:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
    return session.get(model, key, with_for_update=True, populate_existing=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer. In WAL mode synchronous=NORMAL is durable against a crash
    # of the process (SIGKILL: the commit is in the WAL file, in the OS page cache); only a power loss or
    # kernel crash can lose the last commits, which then roll back whole (never a torn incident). FULL
    # adds an fsync to every commit, which capped ingest at the disk's fsync rate.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


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


def make_engine(url: str) -> Engine:
    """An engine for a SQLAlchemy URL or a plain SQLite path; SQLite gets WAL, commits survive SIGKILL."""
    parsed = store_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    engine = create_engine(
        parsed,
        future=True,
        pool_pre_ping=not sqlite,  # a file cannot drop the connection; a server can
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine

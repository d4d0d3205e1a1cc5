"""Database plumbing shared by the incident store and the notification outbox (SQLAlchemy 2)."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Declarative base for every alerting table (store and outbox)."""


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


def make_engine(url: str) -> Engine:
    """An engine for a SQLAlchemy URL or a plain SQLite path; SQLite gets WAL, commits survive SIGKILL."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    sqlite = url.startswith("sqlite")
    engine = create_engine(
        url,
        future=True,
        pool_pre_ping=not sqlite,  # a file cannot drop the connection; a server can
        json_serializer=_json_dumps,
        json_deserializer=orjson.loads,
    )
    if sqlite:
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine

"""A SQLite store written into PostgreSQL, row for row, for the store benchmarks' ``--postgres`` runs.

``bench_retention.py`` builds its store in SQLite (the engine on a fake clock, then SQL copies); this takes
that very store into a PostgreSQL database migrated to the code's revision (``COPY``, table by table in the
order of their foreign keys, sequences moved past the copied ids, then ``ANALYZE`` as autovacuum would soon
after such a load), so that both stores hold the same rows. The server is a throwaway one started as the
tests start theirs (``tests/integration/postgres.py``, PostgreSQL 15 as root), or one the caller names.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine, text

from alerting import outbox_tables, store_models
from alerting.db import Base, make_engine
from alerting.migrate import upgrade
from tests.integration.postgres import throwaway_postgres
from tests.integration.servers import free_port

MODELS = (outbox_tables, store_models)  # the modules whose tables ``Base.metadata`` must know
SERIALS = {"timeline": "seq", "notification_outbox": "id", "untold_changes": "id"}
DERIVED = {"outbox_counts"}  # kept by triggers on the rows copied (migration 0024): not copied itself


@contextmanager
def postgres_server(url: str | None) -> Iterator[str]:
    """``url``, or the URL of a throwaway PostgreSQL on a free port (``GPUWARDEN_TEST_PORTS``), stopped and
    deleted at the end."""
    if url:
        yield url
        return
    with throwaway_postgres(free_port()) as server:
        yield server.url


def fresh_database(url: str, name: str) -> str:
    """An empty database ``name`` on the server of ``url`` (dropped first if there); its URL."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {name}"))
    finally:
        admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def copy_store(sqlite_path: str, url: str) -> dict[str, int]:
    """Every row of the SQLite store at ``sqlite_path`` into the empty database at ``url``, migrated first;
    rows copied per table."""
    engine = make_engine(url)
    upgrade(engine)
    source = sqlite3.connect(sqlite_path)
    copied: dict[str, int] = {}
    raw = engine.raw_connection()
    try:
        pg = raw.driver_connection
        assert pg is not None
        stored = {r[0] for r in source.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        unknown = stored - {t.name for t in Base.metadata.sorted_tables} - {"alembic_version"}
        if unknown:
            raise ValueError(f"tables of no model: {sorted(unknown)}")
        with pg.cursor() as cursor:
            for table in Base.metadata.sorted_tables:
                columns = [r[1] for r in source.execute(f"PRAGMA table_info({table.name})")]
                if not columns or table.name in DERIVED:
                    continue
                names = ", ".join(columns)
                count = 0
                with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
                    for row in source.execute(f"SELECT {names} FROM {table.name}"):
                        copy.write_row(row)
                        count += 1
                copied[table.name] = count
                if table.name in SERIALS:
                    column = SERIALS[table.name]
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column}'),"
                        f" coalesce((SELECT max({column}) FROM {table.name}), 0) + 1, false)"
                    )
        pg.commit()
    finally:
        raw.close()
        source.close()
    analyze(engine)
    engine.dispose()
    return copied


def analyze(engine: Engine) -> None:
    """``VACUUM ANALYZE`` the whole database: what autovacuum does within a minute of a bulk load."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM ANALYZE")


def database_bytes(url: str) -> int:
    """The size of the database at ``url`` on disk."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())
    finally:
        engine.dispose()

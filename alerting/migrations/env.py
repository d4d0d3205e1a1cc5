"""Alembic environment: uses the connection handed over by alerting.migrate, or a URL for the CLI."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import alerting.store_models  # noqa: F401 - registers the tables on Base.metadata
from alerting.db import Base, make_engine
from alerting.migrate import migration_transaction

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    # Every migration runs in the one transaction of ``migration_transaction``, SQLite's DDL included.
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against ``config.attributes['connection']`` or ``sqlalchemy.url``."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no connection and no sqlalchemy.url given to the migration environment")
    with migration_transaction(make_engine(url)) as conn:
        _run(conn)


run_migrations_online()

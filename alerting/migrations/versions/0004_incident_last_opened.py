"""Incidents: when each last opened or reopened, which listings sort by (newest first).

Revision ID: 0004_incident_last_opened
Revises: 0003_ingest_journal
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_incident_last_opened"
down_revision: str | None = "0003_ingest_journal"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Add ``last_opened_at``: the latest ``reopened`` event of each incident, else when it opened.

    Before ``alerting.migrate`` held every statement in one transaction, the ``ALTER TABLE`` committed on
    its own on SQLite (pysqlite's legacy transactions), ahead of the backfill and the version bump: a server
    stopped during the backfill of a big store left the column at revision 0003, and every later start
    failed with "duplicate column name". A column already there is that leftover; it is filled again here.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("incidents")}
    if "last_opened_at" not in columns:
        op.add_column("incidents", sa.Column("last_opened_at", _TS, nullable=True))
    incidents = sa.table("incidents", sa.column("id"), sa.column("opened_at"), sa.column("last_opened_at"))
    timeline = sa.table("timeline", sa.column("incident_id"), sa.column("kind"), sa.column("at"))
    reopened = (
        sa.select(sa.func.max(timeline.c.at))
        .where(timeline.c.incident_id == incidents.c.id, timeline.c.kind == "reopened")
        .scalar_subquery()
    )
    op.execute(incidents.update().values(last_opened_at=sa.func.coalesce(reopened, incidents.c.opened_at)))
    op.create_index("ix_incidents_last_opened_at", "incidents", ["last_opened_at"], if_not_exists=True)


def downgrade() -> None:
    """Drop it."""
    op.drop_index("ix_incidents_last_opened_at", "incidents")
    op.drop_column("incidents", "last_opened_at")

"""Outbox: the incident's priority on each message, so a backlog is delivered most urgent first.

Revision ID: 0013_outbox_priority
Revises: 0012_silence_order
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op

revision = "0013_outbox_priority"
down_revision: str | None = "0012_silence_order"
branch_labels = None
depends_on = None

_MAY_BE_SENT = ("pending", "sending", "failed", "orphaned")  # waiting, or queued again by retry/return


def upgrade() -> None:
    """Add ``priority`` ("P0".."P3"): after an outage the outbox serves the most urgent incidents first, so
    a new P0's page no longer waits behind a backlog of P3 updates. Messages that may still be sent
    (waiting, failed or orphaned) take it from their stored notification; sent and discarded ones keep NULL
    (never ordered again)."""
    bind = op.get_bind()
    columns = {column["name"] for column in sa.inspect(bind).get_columns("notification_outbox")}
    if "priority" not in columns:  # a stopped earlier run may have left it: see 0004
        op.add_column("notification_outbox", sa.Column("priority", sa.String(2), nullable=True))
    outbox = sa.table(
        "notification_outbox",
        sa.column("id", sa.Integer),
        sa.column("status", sa.String),
        sa.column("payload", sa.Text),
        sa.column("priority", sa.String),
    )
    waiting = bind.execute(
        sa.select(outbox.c.id, outbox.c.payload).where(
            outbox.c.status.in_(_MAY_BE_SENT), outbox.c.priority.is_(None)
        )
    ).all()
    for row in waiting:
        try:
            priority = json.loads(row.payload).get("priority")
        except (ValueError, AttributeError):
            continue  # not a notification this revision can read: it goes after P3
        if isinstance(priority, str) and len(priority) == 2:
            bind.execute(sa.update(outbox).where(outbox.c.id == row.id).values(priority=priority))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("notification_outbox", "priority")

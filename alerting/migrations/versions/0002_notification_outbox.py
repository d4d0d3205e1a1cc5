"""Notification outbox: queued notifications per notifier and each incident's Slack thread.

Revision ID: 0002_notification_outbox
Revises: 0001_incidents
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_notification_outbox"
down_revision: str | None = "0001_incidents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the outbox and the thread table (what a stopped earlier run left is kept: see 0004)."""
    op.create_table(
        "notification_outbox",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("notifier", sa.String(64), nullable=False),
        sa.Column("incident_id", sa.String(128), nullable=False),
        sa.Column("idempotency_key", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=False),
        sa.Column("sent_at", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.UniqueConstraint("notifier", "idempotency_key", name="uq_outbox_notifier_key"),
        if_not_exists=True,
    )
    op.create_index("ix_outbox_status_id", "notification_outbox", ["status", "id"], if_not_exists=True)
    op.create_index(
        "ix_outbox_notifier_incident",
        "notification_outbox",
        ["notifier", "incident_id", "id"],
        if_not_exists=True,
    )
    op.create_table(
        "notification_threads",
        sa.Column("notifier", sa.String(64), primary_key=True),
        sa.Column("incident_id", sa.String(128), primary_key=True),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("ts", sa.String(32), nullable=True),
        sa.Column("chart_posted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        if_not_exists=True,
    )


def downgrade() -> None:
    """Drop the outbox tables."""
    op.drop_table("notification_threads")
    op.drop_index("ix_outbox_notifier_incident", table_name="notification_outbox")
    op.drop_index("ix_outbox_status_id", table_name="notification_outbox")
    op.drop_table("notification_outbox")

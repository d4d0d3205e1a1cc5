"""Notification threads: which notification the incident's message was posted for.

Revision ID: 0023_thread_posted_for
Revises: 0022_alerts_status_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023_thread_posted_for"
down_revision: str | None = "0022_alerts_status_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``posted_for`` (NULL: not known): the idempotency key of the notification the incident's Slack
    message was posted with, which it shows already. Slack posts an incident's first message alone before
    the storm's replies and delivers its notification after; a serve restarted between the two had
    forgotten the message showed it, and edited it once more (``chat.update`` with the same content, one per
    incident: 39 beside 11 in a crash fuzz). Threads stored before this revision get NULL: their next
    delivery edits the message as before.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("notification_threads")}
    if "posted_for" not in columns:  # a stopped earlier run may have left it: see 0004
        op.add_column("notification_threads", sa.Column("posted_for", sa.String(64), nullable=True))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("notification_threads", "posted_for")

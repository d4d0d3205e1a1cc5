"""Untold changes: the sequence number of the timeline event each one tells.

Revision ID: 0010_untold_event_seq
Revises: 0009_notifier_pauses
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_untold_event_seq"
down_revision: str | None = "0009_notifier_pauses"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``event_seq``: the timeline row (``timeline.seq``) a stored change tells.

    A change named its event by time and kind only, and one transaction writes several events of a kind at
    one time (an incident's priority set at its opening and raised as the same POST merged a rack's
    incident in): the change was told as the first of them, with its message and idempotency key, and the
    later one was dropped as a repeat. Rows stored before this revision keep NULL and are told as before.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("untold_changes")}
    if "event_seq" not in columns:  # a stopped earlier run may have left it: see 0004
        op.add_column("untold_changes", sa.Column("event_seq", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("untold_changes", "event_seq")

"""Silences: when each was last set, updated in place or expired, which Alertmanager's API reports.

Revision ID: 0014_silence_updated_at
Revises: 0013_outbox_priority
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_silence_updated_at"
down_revision: str | None = "0013_outbox_priority"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``updated_at``: when the silence was created, last updated in place or expired (Alertmanager's
    ``updatedAt``; the API answered its ``startsAt``). Rows stored before this revision keep NULL and report
    their ``startsAt``, as before.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("silences")}
    if "updated_at" not in columns:  # a stopped earlier run may have left it: see 0004
        op.add_column("silences", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("silences", "updated_at")

"""Notifier pauses: a rate limit's Retry-After per notifier, honoured across restarts and by a standby.

Revision ID: 0009_notifier_pauses
Revises: 0008_kept_jobs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_notifier_pauses"
down_revision: str | None = "0008_kept_jobs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table of notifier pauses.

    The pause was kept in memory only: a restarted serve called the rate-limited notifier (Slack) again at
    once for its other queued messages, before the Retry-After it was given had passed.
    """
    op.create_table(
        "notifier_pauses",
        sa.Column("notifier", sa.String(64), primary_key=True),
        sa.Column("until", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        if_not_exists=True,  # a stopped earlier run may have left it: see 0004
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("notifier_pauses")

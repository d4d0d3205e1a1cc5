"""Accept journal: the offset the store has applied, per journal, committed with the alerts.

Revision ID: 0003_ingest_journal
Revises: 0002_notification_outbox
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_ingest_journal"
down_revision: str | None = "0002_notification_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the journal offset table."""
    op.create_table(
        "ingest_journal",
        sa.Column("journal_id", sa.String(64), primary_key=True),
        sa.Column("applied_offset", sa.BigInteger(), nullable=False),
        if_not_exists=True,  # a stopped earlier run may have left it: see 0004
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("ingest_journal")

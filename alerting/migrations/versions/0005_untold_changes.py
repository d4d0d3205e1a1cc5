"""Committed incident changes not told to listeners yet, stored with the change (crash-safe hand-off).

Revision ID: 0005_untold_changes
Revises: 0004_incident_last_opened
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_untold_changes"
down_revision: str | None = "0004_incident_last_opened"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table of untold changes."""
    op.create_table(
        "untold_changes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(40), nullable=False),
        sa.Column("change", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_kind", sa.String(32), nullable=False),
        if_not_exists=True,  # a stopped earlier run may have left it: see 0004
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("untold_changes")

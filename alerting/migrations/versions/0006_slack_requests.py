"""Signed Slack requests already handled, so that a replay within Slack's window changes nothing.

Revision ID: 0006_slack_requests
Revises: 0005_untold_changes
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_slack_requests"
down_revision: str | None = "0005_untold_changes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table of handled Slack requests and its index on the request time (pruning)."""
    op.create_table(
        "slack_requests",
        sa.Column("signature", sa.String(80), primary_key=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("handled_at", sa.DateTime(timezone=True), nullable=False),
        if_not_exists=True,  # a stopped earlier run may have left it: see 0004
    )
    op.create_index("ix_slack_requests_sent_at", "slack_requests", ["sent_at"], if_not_exists=True)


def downgrade() -> None:
    """Drop it."""
    op.drop_index("ix_slack_requests_sent_at", "slack_requests")
    op.drop_table("slack_requests")

"""Incidents: an index on ``(state, resolved_at)``, which the resolved-incident queries read by.

Revision ID: 0007_incidents_resolved_index
Revises: 0006_slack_requests
"""

from __future__ import annotations

from alembic import op

revision = "0007_incidents_resolved_index"
down_revision: str | None = "0006_slack_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index resolved incidents by when they resolved.

    Retention (resolved before the cutoff) and recurrence (resolved within the reopen window, asked by every
    new fault) filter on both columns; with only ``state`` indexed they read every resolved incident the
    store keeps (90 days by default) to find the day's few. Built in the upgrade's transaction like the
    other migrations: on PostgreSQL, writes to ``incidents`` wait while it builds.
    """
    op.create_index(
        "ix_incidents_state_resolved_at",
        "incidents",
        ["state", "resolved_at"],
        if_not_exists=True,  # a stopped earlier run may have left it: see 0004
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_index("ix_incidents_state_resolved_at", "incidents")

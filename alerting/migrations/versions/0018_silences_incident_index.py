"""Silences: an index on ``incident_id``, which the reminders read the silences of incidents by.

Revision ID: 0018_silences_incident_index
Revises: 0017_alert_ends_by_timeout
"""

from __future__ import annotations

from alembic import op

revision = "0018_silences_incident_index"
down_revision: str | None = "0017_alert_ends_by_timeout"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index silences by the incident they silence.

    The tick's reminders read the silences of the incidents due (``reminding.stored_pages``: an opening told
    while one held it counts when it ended) with ``incident_id IN (...)``; unindexed, each such read
    scanned every silence the store keeps, expired ones included until retention deletes them. Built in
    the upgrade's transaction like the other migrations: on PostgreSQL, writes to ``silences`` wait while it
    builds (a store holds thousands of silences, not millions: a moment).
    """
    op.create_index(
        "ix_silences_incident_id",
        "silences",
        ["incident_id"],
        if_not_exists=True,  # a stopped earlier run may have left it: see 0004
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_index("ix_silences_incident_id", "silences")

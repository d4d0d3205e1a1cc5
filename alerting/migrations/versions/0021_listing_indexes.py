"""Outbox and incidents: the indexes that ``/metrics``' outbox counts and the newest-first list read by.

Revision ID: 0021_listing_indexes
Revises: 0020_incidents_root_key
"""

from __future__ import annotations

from alembic import op

revision = "0021_listing_indexes"
down_revision: str | None = "0020_incidents_root_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Index outbox messages by notifier and status, and incidents by state and when they last opened.

    Every ``/metrics`` scrape counts the stored messages of each notifier in each status; no index held
    both, so SQLite read every message row (600,000 sent ones of a long history: 2.6 s a scrape). With
    ``(notifier, status, incident_id)`` the count is a scan of that index alone; ``incident_id`` too, since
    retention deletes the sent messages of pruned incidents by notifier, status and incident: given
    ``(notifier, status)`` alone SQLite took it for that delete and read every sent message of the notifier
    for each slice of 500 incidents. ``incidents list --state resolved``
    lists the newest (by ``last_opened_at``, then ``opened_at``) of one state; ``(state, resolved_at)``
    does not give that order, so SQLite sorted every resolved incident for the 50 it shows (1.4 s beside
    100,000). Built in the upgrade's transaction like the other migrations: on PostgreSQL, writes to both
    tables wait while they build (see README, Upgrading).
    """
    op.create_index(
        "ix_outbox_notifier_status_incident",
        "notification_outbox",
        ["notifier", "status", "incident_id"],
        if_not_exists=True,  # a stopped earlier run may have left it: see 0004
    )
    op.create_index(
        "ix_incidents_state_last_opened_at",
        "incidents",
        ["state", "last_opened_at", "opened_at"],
        if_not_exists=True,  # a stopped earlier run may have left it: see 0004
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_incidents_state_last_opened_at", "incidents")
    op.drop_index("ix_outbox_notifier_status_incident", "notification_outbox")

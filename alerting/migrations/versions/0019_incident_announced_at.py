"""Incidents: when the opening was announced (handed to the outbox), which the reminders count from.

Revision ID: 0019_incident_announced_at
Revises: 0018_silences_incident_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019_incident_announced_at"
down_revision: str | None = "0018_silences_incident_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``announced_at`` (NULL: not announced yet). The reminders counted an opening's page at the end
    of its announce delay, which is earlier than its real announcement when serve was down then or a tick
    came late (an hour down: reminded 3 h after the page, saying 4 h). Incidents stored before this revision
    get their ``opened_at`` (the migration cannot know when a process announced them, nor the delay): read no
    earlier than the end of the delay, they are read as before. Not NULL: the first serve after the upgrade
    announces its open incidents again (the outbox dedupes them) and would store that restart as their page.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("incidents")}
    if "announced_at" not in columns:  # a stopped earlier run may have left it: see 0004
        op.add_column("incidents", sa.Column("announced_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE incidents SET announced_at = opened_at WHERE announced_at IS NULL")


def downgrade() -> None:
    """Drop it."""
    op.drop_column("incidents", "announced_at")

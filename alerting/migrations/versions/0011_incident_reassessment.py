"""Incidents: what inventory refreshes left pending of an open incident, so that a restart carries on.

Revision ID: 0011_incident_reassessment
Revises: 0010_untold_event_seq
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_incident_reassessment"
down_revision: str | None = "0010_untold_event_seq"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``reassessment`` (JSON, NULL: nothing pending): since when refreshes have assessed the incident
    less urgent than it is, and the workloads they listed as stopped by a failure
    (``OpenIncident.lower_since`` and ``stopped``). Only the process's memory held them: after a restart a
    lower priority waited its settle time again, and a job that had left the inventory lowered its
    incident's priority. Rows stored before this revision keep NULL, read as nothing pending, as before.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("incidents")}
    if "reassessment" not in columns:  # a stopped earlier run may have left it: see 0004
        op.add_column("incidents", sa.Column("reassessment", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("incidents", "reassessment")

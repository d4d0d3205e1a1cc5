"""Silences: the order they were set in, which decides the one an alert is muted by.

Revision ID: 0012_silence_order
Revises: 0011_incident_reassessment
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_silence_order"
down_revision: str | None = "0011_incident_reassessment"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``seq``: the order silences were created or last updated in. Of the silences that match an
    alert, the first set is the one it is muted by (``alerts.muted_by``); a restart read them in the store's
    order (by their end) and named another. Rows stored before this revision keep NULL and come first, in
    the store's order, as before.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("silences")}
    if "seq" not in columns:  # a stopped earlier run may have left it: see 0004
        op.add_column("silences", sa.Column("seq", sa.Integer(), nullable=True))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("silences", "seq")

"""Alerts: whether an alert's ``endsAt`` is the resolve timeout (it was last posted without one).

Revision ID: 0017_alert_ends_by_timeout
Revises: 0016_untold_folded
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_alert_ends_by_timeout"
down_revision: str | None = "0016_untold_folded"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``ends_by_timeout`` (``Alert.timeout``): a later post with its own ``endsAt`` replaces such an
    end even when earlier (``spans.merged_ends``). Only the process's memory held it, read back at start
    where the stored end was the last post plus ``resolve_timeout``, which missed a timeout end kept over a
    later one and one applied in a journal batch of several posts. Rows stored before this revision are
    not marked (the migration does not know the configured ``resolve_timeout``): a firing alert whose end
    was a timeout is read as ending there by its sender's word until it is posted again, so an earlier
    ``endsAt`` posted next within its range leaves it ending at the later time (at most
    ``resolve_timeout`` later), as before the mark existed.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("alerts")}
    if "ends_by_timeout" not in columns:  # a stopped earlier run may have left it: see 0004
        op.add_column(
            "alerts",
            sa.Column("ends_by_timeout", sa.Boolean(), nullable=False, server_default=sa.false()),
        )


def downgrade() -> None:
    """Drop it."""
    op.drop_column("alerts", "ends_by_timeout")

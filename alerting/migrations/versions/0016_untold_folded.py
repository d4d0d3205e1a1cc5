"""Untold changes: whether their transaction found them a repeat of their incident's cycle.

Revision ID: 0016_untold_folded
Revises: 0015_untold_telling
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_untold_folded"
down_revision: str | None = "0015_untold_telling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``folded`` (``alerting.flapping.Folded``): the change only repeats its incident's cycle (the same
    alert firing again, the incident quiet again, nothing else between), so Slack edits the message in place
    instead of replying. Decided from the incident's timeline when the change is committed, so a change told
    after a restart is folded alike. Rows stored before this revision keep NULL: told as before.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("untold_changes")}
    if "folded" not in columns:  # a stopped earlier run may have left it: see 0004
        op.add_column("untold_changes", sa.Column("folded", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop it."""
    op.drop_column("untold_changes", "folded")

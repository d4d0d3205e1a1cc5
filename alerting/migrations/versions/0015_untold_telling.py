"""Untold changes: what their transaction decided listeners are told with them.

Revision ID: 0015_untold_telling
Revises: 0014_silence_updated_at
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_untold_telling"
down_revision: str | None = "0014_silence_updated_at"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``merging`` and ``also`` (``alerting.handoff.Telling``): whether the change's transaction merged
    its incident into another (told, paging nobody), and what else it did to the incident that no change
    tells. They were inferred when told, from which changes happened to be told together, so a change told
    after a restart could say otherwise. Rows stored before this revision keep NULL: told as before, paging
    as before, with nothing besides.
    """
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("untold_changes")}
    if "merging" not in columns:  # a stopped earlier run may have left them: see 0004
        op.add_column("untold_changes", sa.Column("merging", sa.Boolean(), nullable=True))
    if "also" not in columns:
        op.add_column("untold_changes", sa.Column("also", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Drop them."""
    op.drop_column("untold_changes", "also")
    op.drop_column("untold_changes", "merging")

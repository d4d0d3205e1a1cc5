"""Kept Slurm jobs: jobs that stopped abnormally, with the GPUs they last held, across restarts.

Revision ID: 0008_kept_jobs
Revises: 0007_incidents_resolved_index
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_kept_jobs"
down_revision: str | None = "0007_incidents_resolved_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table of kept jobs.

    A job that a node failure requeued is PENDING again with no nodes: Slurm no longer says where it ran,
    so a serve that restarts (or a standby that takes over) reads it back from here.
    """
    op.create_table(
        "kept_jobs",
        sa.Column("cluster", sa.String(200), primary_key=True),
        sa.Column("job_id", sa.String(64), primary_key=True),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("workload", sa.JSON(), nullable=False),
        if_not_exists=True,  # a stopped earlier run may have left it: see 0004
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("kept_jobs")

"""Kept inventory: nodes gone from their source and Kubernetes pods lost with them, across restarts.

Revision ID: 0026_kept_inventory
Revises: 0025_outbox_count_sides
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026_kept_inventory"
down_revision: str | None = "0025_outbox_count_sides"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create the table of what inventory readers keep past their source's view.

    A node deleted from Kubernetes (or removed from Slurm) while its incident is open stayed listed in the
    reader's memory only, and a Kubernetes pod lost with its node was kept there only: a serve that
    restarted (or a standby that took over) no longer knew the node's cluster and rack, nor the workloads
    it stopped, and the incident's next alert for the node lost them. Each reader replaces its rows of a
    cluster as a whole; rows are only ever read back by the reader that wrote them (``source``).
    """
    op.create_table(
        "kept_inventory",
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("cluster", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(8), primary_key=True),
        sa.Column("name", sa.String(600), primary_key=True),
        sa.Column("since", sa.Float(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        if_not_exists=True,  # a stopped earlier run may have left it: see 0004
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_table("kept_inventory")

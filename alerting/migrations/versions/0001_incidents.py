"""Incident store: alerts, incidents, timeline, silences.

Revision ID: 0001_incidents
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_incidents"
down_revision: str | None = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the four tables of the incident store (what a stopped earlier run left is kept: see 0004)."""
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("priority", sa.String(2), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("root_kind", sa.String(32), nullable=False),
        sa.Column("root_target", sa.JSON(), nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("last_alert_at", _TS, nullable=False),
        sa.Column("first_onset_at", _TS, nullable=False),
        sa.Column("quiet_since", _TS, nullable=True),
        sa.Column("acknowledged_at", _TS, nullable=True),
        sa.Column("acknowledged_by", sa.String(128), nullable=True),
        sa.Column("resolved_at", _TS, nullable=True),
        sa.Column("merged_into", sa.String(40), nullable=True),
        sa.Column("impact", sa.JSON(), nullable=False),
        sa.Column("actions", sa.JSON(), nullable=False),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_incidents_state", "incidents", ["state"], if_not_exists=True)
    op.create_index("ix_incidents_merged_into", "incidents", ["merged_into"], if_not_exists=True)
    op.create_table(
        "alerts",
        sa.Column("fingerprint", sa.String(16), primary_key=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("annotations", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("starts_at", _TS, nullable=False),
        sa.Column("ends_at", _TS, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("generator_url", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("recommended_action", sa.String(32), nullable=False),
        sa.Column("first_seen", _TS, nullable=False),
        sa.Column("last_seen", _TS, nullable=False),
        sa.Column("receive_count", sa.Integer(), nullable=False),
        sa.Column("incident_id", sa.String(40), sa.ForeignKey("incidents.id"), nullable=True),
        sa.Column("muted_by", sa.String(128), nullable=True),
        sa.Column("flapping", sa.Boolean(), nullable=False),
        sa.Column("transitions", sa.JSON(), nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_alerts_incident_id", "alerts", ["incident_id"], if_not_exists=True)
    op.create_table(
        "timeline",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("incident_id", sa.String(40), sa.ForeignKey("incidents.id"), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        if_not_exists=True,
    )
    op.create_index("ix_timeline_incident_seq", "timeline", ["incident_id", "seq"], if_not_exists=True)
    op.create_table(
        "silences",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("matchers", sa.JSON(), nullable=False),
        sa.Column("starts_at", _TS, nullable=False),
        sa.Column("ends_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("incident_id", sa.String(40), nullable=True),
        if_not_exists=True,
    )
    op.create_index("ix_silences_ends_at", "silences", ["ends_at"], if_not_exists=True)


def downgrade() -> None:
    """Drop the incident store."""
    op.drop_table("silences")
    op.drop_index("ix_timeline_incident_seq", table_name="timeline")
    op.drop_table("timeline")
    op.drop_table("alerts")
    op.drop_table("incidents")

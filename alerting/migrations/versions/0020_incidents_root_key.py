"""Incidents: the digest of the root's place (``root_key``), indexed with what recurrence asks besides.

Revision ID: 0020_incidents_root_key
Revises: 0019_incident_announced_at
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0020_incidents_root_key"
down_revision: str | None = "0019_incident_announced_at"
branch_labels = None
depends_on = None

# The rules of ``alerting.root_places`` as of this revision (a migration keeps its own copy: the code may
# change after it; a change of the key needs a migration that computes it again).
_FIELDS: dict[str, tuple[str, ...]] = {
    "cluster": ("name",),
    "rack": ("cluster", "name"),
    "node": ("cluster", "name"),
    "gpu": ("node",),
}
_CHUNK = 1000


def _key(target: object) -> str | None:
    """The digest of a stored root's place, None when it has none (``alerting.root_places.root_key``)."""
    if not isinstance(target, dict):
        return None
    kind = target.get("type")
    fields = _FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        return None
    values = [target.get(f) for f in fields]
    if not all(isinstance(v, str) for v in values):
        return None
    return hashlib.sha256(json.dumps((kind, *values)).encode()).hexdigest()[:32]


def upgrade() -> None:
    """Add ``root_key`` and its index, and compute it for every incident stored before.

    A new infrastructure fault asks which incidents resolved within the reopen window may hold its node;
    the store read every one's root out of its JSON, once per new node (a POST of 2,000 new nodes beside
    8,000 incidents resolved within the day: 33-38 s to apply). With the key, each node is four index
    lookups. Every row gets its key, open ones too (they resolve later, their root unchanged); a root with
    no place (a workload) keeps NULL. The index holds every condition of the question (resolved, not
    merged, since the window's start): with ``merged_into`` left out, SQLite read the incidents of no merge
    (nearly all) through ``ix_incidents_merged_into`` instead. Built in the upgrade's transaction like the
    other migrations: on PostgreSQL, writes to ``incidents`` wait while it runs.
    """
    bind = op.get_bind()
    columns = {column["name"] for column in sa.inspect(bind).get_columns("incidents")}
    if "root_key" not in columns:  # a stopped earlier run may have left it: see 0004
        op.add_column("incidents", sa.Column("root_key", sa.String(32), nullable=True))
    incidents = sa.table(
        "incidents",
        sa.column("id", sa.String),
        sa.column("root_target", sa.JSON),
        sa.column("root_key", sa.String),
    )
    rows = bind.execute(
        sa.select(incidents.c.id, incidents.c.root_target).where(incidents.c.root_key.is_(None))
    ).all()
    keyed = [{"row_id": row.id, "key": key} for row in rows if (key := _key(row.root_target)) is not None]
    statement = (
        sa.update(incidents)
        .where(incidents.c.id == sa.bindparam("row_id"))
        .values(root_key=sa.bindparam("key"))
    )
    for start in range(0, len(keyed), _CHUNK):
        bind.execute(statement, keyed[start : start + _CHUNK])
    op.create_index(
        "ix_incidents_root_key_state_merged_into_resolved_at",
        "incidents",
        ["root_key", "state", "merged_into", "resolved_at"],
        if_not_exists=True,  # a stopped earlier run may have left it: see 0004
    )


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_incidents_root_key_state_merged_into_resolved_at", "incidents")
    op.drop_column("incidents", "root_key")

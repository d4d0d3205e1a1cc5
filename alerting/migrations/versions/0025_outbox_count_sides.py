"""Outbox counts in two rows per notifier and status: what came in, what went out.

Revision ID: 0025_outbox_count_sides
Revises: 0024_outbox_counts
"""

from __future__ import annotations

import importlib
from types import ModuleType

import sqlalchemy as sa
from alembic import op

revision = "0025_outbox_count_sides"
down_revision: str | None = "0024_outbox_counts"
branch_labels = None
depends_on = None

TRIGGERS = ("outbox_counts_insert", "outbox_counts_update", "outbox_counts_delete")
ADDED, REMOVED = "added", "removed"

# SQLite: a trigger per row, as 0024's; a message that comes into a (notifier, status) adds 1 to its
# ``added`` row, one that goes out of it takes 1 from its ``removed`` row.
_ADD_NEW = (
    "INSERT INTO outbox_counts (notifier, status, side, messages)"
    " VALUES (NEW.notifier, NEW.status, 'added', 1)"
    " ON CONFLICT (notifier, status, side) DO UPDATE SET messages = messages + 1;"
)
_TAKE_OLD = (
    "INSERT INTO outbox_counts (notifier, status, side, messages)"
    " VALUES (OLD.notifier, OLD.status, 'removed', -1)"
    " ON CONFLICT (notifier, status, side) DO UPDATE SET messages = messages - 1;"
)
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER outbox_counts_insert AFTER INSERT ON notification_outbox BEGIN {_ADD_NEW} END",
    "CREATE TRIGGER outbox_counts_update AFTER UPDATE OF notifier, status ON notification_outbox"
    " WHEN OLD.notifier IS NOT NEW.notifier OR OLD.status IS NOT NEW.status"
    f" BEGIN {_TAKE_OLD} {_ADD_NEW} END",
    f"CREATE TRIGGER outbox_counts_delete AFTER DELETE ON notification_outbox BEGIN {_TAKE_OLD} END",
)

# PostgreSQL: a trigger per statement over its transition tables, as 0024's; what a statement adds to a
# (notifier, status) on balance goes to its ``added`` row, what it takes to its ``removed`` row, in the rows'
# key order (no two writers wait on each other in a circle).
POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION outbox_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO outbox_counts AS c (notifier, status, side, messages)
        SELECT notifier, status, 'added', count(*) FROM added
        GROUP BY notifier, status ORDER BY notifier, status
        ON CONFLICT (notifier, status, side) DO UPDATE SET messages = c.messages + EXCLUDED.messages;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO outbox_counts AS c (notifier, status, side, messages)
        SELECT notifier, status, CASE WHEN change > 0 THEN 'added' ELSE 'removed' END, change FROM (
            SELECT notifier, status, sum(change) AS change FROM (
                SELECT notifier, status, -1 AS change FROM gone
                UNION ALL SELECT notifier, status, 1 FROM added
            ) AS changes
            GROUP BY notifier, status HAVING sum(change) <> 0
        ) AS balance
        ORDER BY notifier, status, 3
        ON CONFLICT (notifier, status, side) DO UPDATE SET messages = c.messages + EXCLUDED.messages;
    ELSE
        INSERT INTO outbox_counts AS c (notifier, status, side, messages)
        SELECT notifier, status, 'removed', -count(*) FROM gone
        GROUP BY notifier, status ORDER BY notifier, status
        ON CONFLICT (notifier, status, side) DO UPDATE SET messages = c.messages + EXCLUDED.messages;
    END IF;
    RETURN NULL;
END
$$
"""


def _counts_0024() -> ModuleType:
    """Migration 0024's module: its table, triggers and function, which the downgrade makes again."""
    return importlib.import_module("alerting.migrations.versions.0024_outbox_counts")


def _drop_triggers(postgres: bool) -> None:
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (" ON notification_outbox" if postgres else ""))


def upgrade() -> None:
    """Key ``outbox_counts`` by notifier, status and side: ``added`` (what came into that status, a count
    up) and ``removed`` (what went out of it, a count down); a count is the sum of its two rows.

    On PostgreSQL a trigger's write of a counts row holds that row until its transaction ends. Retention's
    slice deletes a notifier's sent messages (its ``sent`` row changed) and goes on deleting for a while; the
    outbox marking that notifier's next message ``sent`` changed the same row, and waited for the slice's
    commit (about 0.25 s a message while the prune of a long history ran). Now retention writes ``sent /
    removed``, the outbox ``sent / added``: no path but retention deletes sent messages, so none waits for it.
    The counts are rebuilt from the stored messages after the new triggers are in place, in the upgrade's
    transaction, as 0024 did (on PostgreSQL dropping 0024's triggers holds off every other use of the
    outbox until it commits). A later migration that rebuilds ``notification_outbox`` (SQLite's batch mode)
    must create these triggers again.
    """
    postgres = op.get_bind().dialect.name == "postgresql"
    _drop_triggers(postgres)
    op.drop_table("outbox_counts")
    op.create_table(
        "outbox_counts",
        sa.Column("notifier", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("side", sa.String(8), primary_key=True),
        sa.Column("messages", sa.BigInteger, nullable=False),
    )
    if postgres:
        op.execute(POSTGRES_FUNCTION)
        triggers: tuple[str, ...] = _counts_0024().POSTGRES_TRIGGERS
    else:
        triggers = SQLITE_TRIGGERS
    for trigger in triggers:
        op.execute(trigger)
    op.execute(
        "INSERT INTO outbox_counts (notifier, status, side, messages)"
        " SELECT notifier, status, 'added', count(*) FROM notification_outbox GROUP BY notifier, status"
    )


def downgrade() -> None:
    """0024's table (a row per notifier and status), its triggers and function, its counts summed from
    the two sides."""
    postgres = op.get_bind().dialect.name == "postgresql"
    counts = _counts_0024()
    _drop_triggers(postgres)
    op.rename_table("outbox_counts", "outbox_count_sides")
    op.create_table(
        "outbox_counts",
        sa.Column("notifier", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("messages", sa.Integer, nullable=False),
    )
    if postgres:
        op.execute(counts.POSTGRES_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION"))
    for trigger in counts.POSTGRES_TRIGGERS if postgres else counts.SQLITE_TRIGGERS:
        op.execute(trigger)
    op.execute(
        "INSERT INTO outbox_counts (notifier, status, messages)"
        " SELECT notifier, status, sum(messages) FROM outbox_count_sides GROUP BY notifier, status"
    )
    op.drop_table("outbox_count_sides")

"""Outbox counts: how many messages each notifier has in each status, kept by triggers.

Revision ID: 0024_outbox_counts
Revises: 0023_thread_posted_for
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024_outbox_counts"
down_revision: str | None = "0023_thread_posted_for"
branch_labels = None
depends_on = None

TRIGGERS = ("outbox_counts_insert", "outbox_counts_update", "outbox_counts_delete")

# SQLite: a trigger per row. The counts row of a message's (notifier, status) is its own, so no path that
# inserts, changes or deletes a message (the outbox, retention, `outbox retry`, `discard`, a future one)
# can leave it wrong, and a transaction rolled back (a crash) takes its counts back with it.
_ADD_NEW = (
    "INSERT INTO outbox_counts (notifier, status, messages) VALUES (NEW.notifier, NEW.status, 1)"
    " ON CONFLICT (notifier, status) DO UPDATE SET messages = messages + 1;"
)
_TAKE_OLD = (
    "UPDATE outbox_counts SET messages = messages - 1 WHERE notifier = OLD.notifier AND status = OLD.status;"
)
SQLITE_TRIGGERS = (
    f"CREATE TRIGGER outbox_counts_insert AFTER INSERT ON notification_outbox BEGIN {_ADD_NEW} END",
    "CREATE TRIGGER outbox_counts_update AFTER UPDATE OF notifier, status ON notification_outbox"
    " WHEN OLD.notifier IS NOT NEW.notifier OR OLD.status IS NOT NEW.status"
    f" BEGIN {_TAKE_OLD} {_ADD_NEW} END",
    f"CREATE TRIGGER outbox_counts_delete AFTER DELETE ON notification_outbox BEGIN {_TAKE_OLD} END",
)

# PostgreSQL: a trigger per statement, over the rows it changed (transition tables): retention's delete of
# thousands of sent messages is one update of the few counts rows, not one per message. The counts rows are
# written in their key's order, so two transactions never wait on each other's in a circle.
POSTGRES_FUNCTION = """
CREATE FUNCTION outbox_counts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO outbox_counts AS c (notifier, status, messages)
        SELECT notifier, status, count(*) FROM added
        GROUP BY notifier, status ORDER BY notifier, status
        ON CONFLICT (notifier, status) DO UPDATE SET messages = c.messages + EXCLUDED.messages;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO outbox_counts AS c (notifier, status, messages)
        SELECT notifier, status, sum(change) FROM (
            SELECT notifier, status, -1 AS change FROM gone
            UNION ALL SELECT notifier, status, 1 FROM added
        ) AS changes
        GROUP BY notifier, status HAVING sum(change) <> 0 ORDER BY notifier, status
        ON CONFLICT (notifier, status) DO UPDATE SET messages = c.messages + EXCLUDED.messages;
    ELSE
        INSERT INTO outbox_counts AS c (notifier, status, messages)
        SELECT notifier, status, -count(*) FROM gone
        GROUP BY notifier, status ORDER BY notifier, status
        ON CONFLICT (notifier, status) DO UPDATE SET messages = c.messages + EXCLUDED.messages;
    END IF;
    RETURN NULL;
END
$$
"""
POSTGRES_TRIGGERS = (
    "CREATE TRIGGER outbox_counts_insert AFTER INSERT ON notification_outbox"
    " REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION outbox_counts_changed()",
    "CREATE TRIGGER outbox_counts_update AFTER UPDATE ON notification_outbox"
    " REFERENCING OLD TABLE AS gone NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION"
    " outbox_counts_changed()",
    "CREATE TRIGGER outbox_counts_delete AFTER DELETE ON notification_outbox"
    " REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION outbox_counts_changed()",
)


def upgrade() -> None:
    """Add ``outbox_counts``: ``(notifier, status) -> messages``, what ``/metrics`` shows as
    ``gpuwarden_outbox_messages``, filled from the stored messages and kept by triggers on
    ``notification_outbox`` in the transaction of every change to it.

    ``/metrics`` counted the messages by notifier and status at every scrape: a read of each entry of the
    outbox's index (600,000 sent messages of a long history on PostgreSQL: 86-330 ms a scrape); this table
    has a row per notifier and status. The triggers are created before the counts are read, in the
    upgrade's transaction (on PostgreSQL their creation holds off writes to the outbox until it commits), so
    no message is counted twice or missed. A later migration that rebuilds ``notification_outbox`` (SQLite's
    batch mode) must create the triggers again.
    """
    bind = op.get_bind()
    if "outbox_counts" in sa.inspect(bind).get_table_names():  # a stopped earlier run: see 0004
        return
    op.create_table(
        "outbox_counts",
        sa.Column("notifier", sa.String(64), primary_key=True),
        sa.Column("status", sa.String(16), primary_key=True),
        sa.Column("messages", sa.Integer, nullable=False),
    )
    if bind.dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        for trigger in POSTGRES_TRIGGERS:
            op.execute(trigger)
    else:
        for trigger in SQLITE_TRIGGERS:
            op.execute(trigger)
    op.execute(
        "INSERT INTO outbox_counts (notifier, status, messages)"
        " SELECT notifier, status, count(*) FROM notification_outbox GROUP BY notifier, status"
    )


def downgrade() -> None:
    """Drop the triggers, their function and the table."""
    postgres = op.get_bind().dialect.name == "postgresql"
    for trigger in TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {trigger}" + (" ON notification_outbox" if postgres else ""))
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS outbox_counts_changed()")
    op.drop_table("outbox_counts")

"""Every path that changes the outbox, each followed by a check that ``outbox_counts`` (migrations 0024 and
0025, what ``/metrics`` and ``outbox list`` read) equals a fresh count of the messages: on any store (the
SQLite test and PostgreSQL's integration test share it)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from sqlalchemy import Engine, event, inspect, text
from sqlalchemy.orm import Session

from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.notifiers.base import Notification, ThreadSaver, ThreadState
from alerting.outbox import Outbox
from alerting.outbox_orphans import reconcile_orphans
from alerting.outbox_tables import DISCARDED, FAILED, ORPHANED, PENDING, SENDING, SENT
from alerting.retention import prune_resolved
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus
from tests.alerting.migrate_steps import downgrade
from tests.alerting.notifiers.incidents import lifecycle
from tests.alerting.outbox_destinations import CLOCK, Destination, queued_for

DAY = 86_400.0


def kept_and_counted(sql: Engine) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """The counts ``outbox_counts`` keeps (its sides summed, counts at 0 left out) and a ``GROUP BY`` of the
    messages now."""
    with sql.connect() as conn:
        kept = conn.execute(
            text("SELECT notifier, status, sum(messages) FROM outbox_counts GROUP BY notifier, status")
        )
        fresh = conn.execute(
            text("SELECT notifier, status, count(*) FROM notification_outbox GROUP BY notifier, status")
        )
        return {(n, s): int(c) for n, s, c in kept if c}, {(n, s): int(c) for n, s, c in fresh}


class Checked:
    """Compares the kept counts with the messages after each step; remembers the statuses it saw."""

    def __init__(self, sql: Engine, outbox: Outbox | None = None) -> None:
        self.sql = sql
        self.outbox = outbox
        self.seen: set[str] = set()

    def __call__(self, step: str) -> None:
        kept, fresh = kept_and_counted(self.sql)
        assert kept == fresh, f"after {step}: kept {kept}, counted {fresh}"
        if self.outbox is not None:  # what /metrics shows (no notifier holds edits here: none held)
            assert self.outbox.counts_by_notifier() == fresh, step
        self.seen.update(status for _, status in fresh)


class CheckingDestination(Destination):
    """A ``Destination`` that checks the counts while its message is in flight (status ``sending``)."""

    def __init__(self, name: str, check: Checked, *, mode: str = "up") -> None:
        super().__init__(name, mode=mode)
        self.check = check

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> None:
        self.check(f"{self.name} sending")
        super().deliver(notification, thread, retry=retry, save=save)


def _resolved(engine: IncidentEngine, clock: FakeClock, node: str) -> None:
    """A node down, fired and resolved past the quiet period: messages queued for every notifier."""
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": node}
    engine.ingest([Alert(labels)])
    clock.advance(60)
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])
    clock.advance(301)
    engine.tick()


def the_counts_follow_every_path(sql: Engine) -> None:
    """Enqueue, send, fail and back off, give up, ``outbox retry``, discard, set aside for a notifier gone
    and back, a transaction rolled back (a crash), retention's prune: the counts match after each."""
    clock = FakeClock()
    check = Checked(sql)
    slack = CheckingDestination("slack", check)
    hook = CheckingDestination("webhook:ops", check, mode="down")
    outbox = Outbox(sql, [slack, hook], clock)
    check.outbox = outbox
    engine = IncidentEngine(
        sql, clock, AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=300, retention_days=30)
    )
    engine.subscribe(outbox)
    check("nothing stored")
    _resolved(engine, clock, "x1")
    check("enqueue")
    outbox.dispatch_due()
    check("slack sent, the webhook down (backing off)")
    hook.mode = "refused"
    clock.advance(3600)
    outbox.dispatch_due()
    check("the webhook refused for good (failed)")
    requeued, _ = outbox.requeue_failed()
    assert requeued, "outbox retry queued none"
    check("outbox retry")
    outbox.dispatch_due()
    check("refused again")
    outbox.discard("webhook:ops", [FAILED], by="bob", dry_run=False)
    check("outbox discard")
    hook.mode = "down"
    _resolved(engine, clock, "x2")
    outbox.dispatch_due()
    check("a second incident, the webhook down")
    reconcile_orphans(sql, ["slack"], clock.time())
    check("the webhook no longer configured (orphaned)")
    hook.mode = "up"
    reconcile_orphans(sql, ["slack", "webhook:ops"], clock.time())
    check("the webhook back")
    with sql.connect() as conn:  # a transaction cut off before its commit: a crash
        conn.execute(text("UPDATE notification_outbox SET status = 'sending'"))
        conn.execute(text("DELETE FROM notification_outbox WHERE notifier = 'slack'"))
        conn.rollback()
    check("a transaction rolled back")
    clock.advance(3600)
    outbox.dispatch_due()
    check("the webhook delivered")
    assert {PENDING, SENDING, SENT, FAILED, DISCARDED, ORPHANED} <= check.seen, check.seen
    by_status: dict[str, int] = {}
    for (_, status), count in kept_and_counted(sql)[1].items():
        by_status[status] = by_status.get(status, 0) + count
    assert outbox.depths() == (by_status, 0), "what `outbox list` shows"
    clock.advance(31 * DAY)
    assert engine.prune().notifications > 0
    check("retention's prune")
    kept, _ = kept_and_counted(sql)
    assert kept == {} and outbox.depths() == ({}, 0), "every message of the pruned incidents went"


def the_counts_follow_deliveries_beside_new_messages(sql: Engine) -> None:
    """``serve``'s outbox: a thread per notifier delivering while incidents' changes are queued, and
    ``outbox retry`` beside them, each in transactions of its own: the counts match once all are done (on
    PostgreSQL, where they run at once, none waits for another in a circle)."""
    slack, hook = Destination("slack"), Destination("webhook:ops", mode="down")
    outbox = Outbox(sql, [slack, hook], SystemClock())
    stop = threading.Event()
    worker = threading.Thread(target=outbox.run, args=(stop,), kwargs={"poll_seconds": 0.01})
    worker.start()
    try:
        for n in range(30):
            for c in lifecycle(f"inc-{n}"):
                outbox(c)
            if n % 10 == 9:
                outbox.requeue_failed()
        hook.mode = "up"
    finally:
        stop.set()
        worker.join(60)
    assert not worker.is_alive()
    assert outbox.stats.errors == 0
    kept, fresh = kept_and_counted(sql)
    assert kept == fresh and fresh.get(("slack", SENT)), fresh


def the_upgrade_counts_the_stored_messages_and_the_downgrade_drops_them(sql: Engine) -> None:
    """Messages stored at 0023 are counted by the upgrade to 0024; taken down to 0023 again, the table and
    its triggers go, and the outbox works as before."""
    downgrade(sql, "0023_thread_posted_for")
    sql.dispose()  # a pooled SQLite connection keeps the schema it read
    assert "outbox_counts" not in inspect(sql).get_table_names()
    queued_for(sql, Destination("slack"), Destination("webhook:ops", mode="refused"))
    upgrade(sql)
    kept, fresh = kept_and_counted(sql)
    assert kept == fresh and fresh[("webhook:ops", FAILED)], fresh
    downgrade(sql, "0023_thread_posted_for")
    sql.dispose()
    assert "outbox_counts" not in inspect(sql).get_table_names()
    queued_for(sql, Destination("slack"), Destination("webhook:ops"))  # no trigger left behind


def the_0025_upgrade_keeps_the_counts_and_its_downgrade_too(sql: Engine) -> None:
    """Messages counted at 0024 (a row per notifier and status) are counted the same after the upgrade to
    0025 (two rows, a side each), and the same again taken back to 0024, whose triggers then count on."""
    downgrade(sql, "0024_outbox_counts")
    sql.dispose()
    queued_for(sql, Destination("slack"), Destination("webhook:ops", mode="refused"))
    upgrade(sql)
    sql.dispose()
    kept, fresh = kept_and_counted(sql)
    assert kept == fresh and fresh[("webhook:ops", FAILED)] and fresh[("slack", SENT)], fresh
    queued_for(sql, Destination("slack"), Destination("webhook:ops"))
    downgrade(sql, "0024_outbox_counts")
    sql.dispose()
    assert {c["name"] for c in inspect(sql).get_columns("outbox_counts")} == {
        "notifier",
        "status",
        "messages",
    }
    kept, fresh = kept_and_counted(sql)
    assert kept == fresh, (kept, fresh)
    outbox = Outbox(sql, [Destination("webhook:ops", mode="down")], CLOCK)
    for change in lifecycle("after-the-downgrade"):
        outbox(change)
    kept, fresh = kept_and_counted(sql)
    assert kept == fresh and fresh[("webhook:ops", PENDING)], fresh


def a_message_is_marked_sent_beside_a_retention_slice(sql: Engine, impatient: Engine) -> None:
    """Retention's slice has deleted a notifier's sent messages and not yet committed (it goes on deleting
    for a while) when the outbox marks that notifier's next message sent: through ``impatient``, the same
    store by connections that give up on a row lock (PostgreSQL's ``lock_timeout``), the delivery is
    recorded, not refused for a lock the slice holds, and the counts match once both are done."""
    clock = FakeClock()
    slack = Destination("slack")
    engine = IncidentEngine(
        sql, clock, AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=300, retention_days=30)
    )
    engine.subscribe(Outbox(sql, [slack], clock))
    _resolved(engine, clock, "old")
    assert Outbox(sql, [slack], clock).dispatch_due()
    clock.advance(31 * DAY)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "new"})])
    with Session(sql) as pruning:
        part = prune_resolved(pruning, clock.now() - timedelta(days=30), 500)
        assert part.incidents == 1 and part.notifications, part
        assert Outbox(impatient, [slack], clock).dispatch_due() == 1  # the new incident's opening
        pruning.commit()
    kept, fresh = kept_and_counted(sql)
    assert kept == fresh == {("slack", SENT): 1}, (kept, fresh)


def requeue_changes_several_notifiers_messages_by_one_statement(sql: Engine) -> None:
    """``outbox retry`` of failed messages of two notifiers, their ids interleaved: one UPDATE of the outbox
    (not one per message, nor a batch of them), so PostgreSQL's statement trigger locks their counts rows in
    its one order (a requeue of another incident beside it takes them the same way: no deadlock)."""
    slack, hook = Destination("slack", mode="refused"), Destination("webhook:ops", mode="refused")
    queued_for(sql, slack, hook)
    outbox = Outbox(sql, [slack, hook], CLOCK)
    failed = outbox.messages(status=FAILED)
    assert {m.notifier for m in failed} == {"slack", "webhook:ops"}, failed
    with outbox_updates(sql) as updates:
        requeued, overtaken = outbox.requeue_failed()
    assert (requeued, overtaken) == (len(failed), 0)
    assert len(updates) == 1 and not updates[0][2], updates
    assert {m.notifier for m in outbox.messages(status=PENDING)} == {"slack", "webhook:ops"}
    kept, fresh = kept_and_counted(sql)
    assert kept == fresh, (kept, fresh)


def discard_changes_the_counts_rows_in_their_order(sql: Engine) -> None:
    """``outbox discard --status failed --status orphaned`` of messages whose statuses alternate by id: the
    failed ones are written before the orphaned ones, so a PostgreSQL counts row of ``failed`` is never
    locked after one of ``orphaned`` (every writer takes them in ``(notifier, status)`` order)."""
    queued_for(sql, Destination("webhook:ops", mode="refused"))
    outbox = Outbox(sql, [], CLOCK)
    ids = [m.id for m in outbox.messages(status=FAILED)]
    assert len(ids) >= 3, ids
    with sql.begin() as conn:  # every other one set aside (its notifier gone and back, in between)
        conn.execute(
            text("UPDATE notification_outbox SET status = 'orphaned' WHERE id IN (:a, :b)"),
            {"a": ids[0], "b": ids[2]},
        )
    was = {m.id: m.status for m in outbox.messages()}
    with outbox_updates(sql) as updates:
        outbox.discard("webhook:ops", [ORPHANED, FAILED], by="bob")
    written = [was[_row_id(p)] for _, params, _ in updates for p in params]
    assert written == sorted(written) and set(written) == {FAILED, ORPHANED}, updates
    kept, fresh = kept_and_counted(sql)
    assert kept == fresh and fresh[("webhook:ops", DISCARDED)] == len(ids), (kept, fresh)


def orphans_change_the_counts_rows_in_their_order(sql: Engine) -> None:
    """``serve``'s start setting aside one notifier's messages (removed) and taking another's back
    (configured again): a notifier at a time, in the counts rows' order, not the set-aside ones first."""
    queued_for(sql, Destination("slack", mode="down"), Destination("webhook:ops", mode="down"))
    reconcile_orphans(sql, ["webhook:ops"], 0.0)  # slack removed for a while
    with outbox_updates(sql) as updates:
        report = reconcile_orphans(sql, ["slack"], 0.0)  # slack back, the webhook removed
    assert report.set_aside.keys() == {"webhook:ops"} and report.resumed.keys() == {"slack"}, report
    names = [
        v for _, params, _ in updates for p in params for v in _values(p) if v in ("slack", "webhook:ops")
    ]
    assert names == ["slack", "webhook:ops"], updates
    kept, fresh = kept_and_counted(sql)
    assert kept == fresh, (kept, fresh)


@contextmanager
def outbox_updates(sql: Engine) -> Iterator[list[tuple[str, list[object], bool]]]:
    """The UPDATEs of ``notification_outbox`` sent inside: (statement, its parameter sets, executemany)."""
    updates: list[tuple[str, list[object], bool]] = []

    def record(_c: object, _k: object, statement: str, params: object, _x: object, many: bool) -> None:
        if statement.lstrip().upper().startswith("UPDATE NOTIFICATION_OUTBOX"):
            updates.append((statement, list(params) if many else [params], many))  # type: ignore[call-overload]

    event.listen(sql, "before_cursor_execute", record)
    try:
        yield updates
    finally:
        event.remove(sql, "before_cursor_execute", record)


def _row_id(params: object) -> int:
    """The id of the message an ORM UPDATE of one row writes: its last parameter."""
    return int(_values(params)[-1])


def _values(params: object) -> list[object]:
    """One statement's parameter values in order (SQLite's are a tuple, psycopg's a dict)."""
    return list(params.values()) if isinstance(params, dict) else list(params)  # type: ignore[call-overload]

"""The incident engine after a failed transaction or a restart (its view rebuilt from the store: nothing
announced or resolved twice, nothing half-rebuilt), and the statements it sends the store."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from alerting import scenarios
from alerting.db import make_engine
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertStatus, IncidentState
from tests.alerting.incident_engines import _engine, _gpu_alert, _open
from tests.alerting.store_scenarios import history_then_back
from tests.migrated_store import migrated_sqlite


def test_a_rebuild_after_a_failed_transaction_does_not_announce_incidents_again(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock)
    opened: list[str] = []
    engine.subscribe(lambda c: opened.append(c.incident.id) if c.kind is ChangeKind.OPENED else None)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "x1"})])
    assert len(opened) == 1
    (incident_id,) = opened
    engine._open.pop(incident_id)  # a failed transaction may have changed the view (a merge), then
    engine._reload()  # rebuilds it from the store, as a failed transaction does
    clock.advance(30)
    engine.tick()
    assert len(opened) == 1
    restarted = _engine(db, clock)  # a new process: the store says it was announced (announced_at)
    restarted.subscribe(lambda c: opened.append(c.incident.id) if c.kind is ChangeKind.OPENED else None)
    restarted.tick()
    assert len(opened) == 1
    with make_engine(db).begin() as conn:  # one that crashed before storing the announcement: it does
        conn.execute(text("UPDATE incidents SET announced_at = NULL"))
    restarted = _engine(db, clock)
    restarted.subscribe(lambda c: opened.append(c.incident.id) if c.kind is ChangeKind.OPENED else None)
    restarted.tick()
    assert len(opened) == 2


def test_a_rebuild_does_not_announce_a_reopened_incident_as_opened(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, quiet_period_seconds=5)
    opened: list[str] = []
    engine.subscribe(lambda c: opened.append(c.incident.id) if c.kind is ChangeKind.OPENED else None)
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    engine.ingest([Alert(labels)])
    clock.advance(10)
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])
    clock.advance(10)
    engine.tick()  # resolved after the quiet period
    engine.ingest([Alert(labels)])  # it fires again: reopened
    assert len(opened) == 1
    engine._reload()  # a failed transaction's rebuild
    clock.advance(30)
    engine.tick()
    assert len(opened) == 1


def test_changes_replayed_after_a_restart_reach_listeners_of_an_announced_incident(
    db: str, clock: FakeClock
) -> None:
    # serve replays its journal before the first tick: a change to an incident announced before the crash
    # used to fold into its announcement again, which the outbox dropped as a duplicate.
    first = _engine(db, clock, scenarios.fleet_inventory(), announce_delay_seconds=10)
    first.ingest([_gpu_alert("r02-n01", 3, "GPULost")])
    clock.advance(11)
    first.tick()
    engine = _engine(db, clock, scenarios.fleet_inventory(), announce_delay_seconds=10)  # restarted
    seen: list[ChangeKind] = []
    engine.subscribe(lambda c: seen.append(c.kind))
    clock.advance(5)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r02-n01"})])  # replayed
    # Announced again first (the outbox dedupes it; it may never have gone out), then the change.
    assert seen[0] is ChangeKind.OPENED and set(seen[1:]) & {ChangeKind.UPDATED, ChangeKind.PRIORITY_CHANGED}
    before = len(seen)
    engine.tick()
    assert len(seen) == before  # not announced a third time


def test_a_transaction_that_fails_while_the_store_is_down_leaves_no_half_rebuilt_view(
    db: str, clock: FakeClock
) -> None:
    # PostgreSQL restarting: the transaction fails, and so does the rebuild of the open incidents after it.
    engine = _engine(db, clock, quiet_period_seconds=30)
    down = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    engine.ingest([Alert(down), Alert({**down, "node": "x2"})])
    sessions, failing = engine._sessions, False

    def refused(*args: object, **kwargs: object) -> object:
        raise OSError("connection refused")

    def store(*args: object, **kwargs: object) -> object:
        session = sessions(*args, **kwargs)
        if failing:  # the session opens; its first statement fails, as with a database that went away
            for name in ("scalars", "scalar", "execute", "get", "connection", "flush"):
                setattr(session, name, refused)
        return session

    engine._sessions = store  # type: ignore[assignment]
    later = [Alert(down, status=AlertStatus.RESOLVED), _gpu_alert("x2", 1, "GPUXid", xid="79")]
    failing = True
    with pytest.raises(OSError):
        engine.ingest(later)
    with pytest.raises(OSError):
        engine.tick()
    failing = False
    engine.ingest(later)  # the applier's retry once the store is back
    assert sorted(n for *_, n in _open(engine)) == [1, 2]  # the XID joined x2's incident
    clock.advance(31)
    engine.tick()
    assert [n for *_, n in _open(engine)] == [2]  # x1's incident resolved after its quiet period


def test_a_resolution_whose_commit_answer_was_lost_is_not_resolved_again(
    db: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(db, clock, quiet_period_seconds=60)
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    engine.ingest([Alert(labels)])
    (inc,) = _open(engine)
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])
    clock.advance(61)
    closed = engine._closed

    def lost_answer(incident_ids: object) -> None:
        monkeypatch.setattr(engine, "_closed", closed)
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(engine, "_closed", lost_answer)  # the resolving COMMIT went through, its answer lost
    with pytest.raises(OperationalError):
        engine.tick()
    resolved_at = engine.store.get(inc[0]).resolved_at
    clock.advance(1)
    engine.tick()
    incident = engine.store.get(inc[0])
    assert [e.kind for e in incident.timeline].count("resolved") == 1
    assert incident.state is IncidentState.RESOLVED and incident.resolved_at == resolved_at


def test_the_engine_sends_a_few_in_list_statements_whatever_the_batch_sizes(
    db: str, clock: FakeClock
) -> None:
    """A statement per IN-list length, kept prepared by every pooled connection (as big as its list): the
    ingest's alerts of a POST, the tick's incidents, the changes handed on, at every length from 1 up."""
    engine = _engine(db, clock, quiet_period_seconds=30)
    engine.subscribe(lambda change: None)  # changes are stored, handed on, then deleted by their ids
    labels = [{"alertname": "NodeDown", "cluster": "c1", "node": f"n{k:02d}"} for k in range(40)]
    engine.ingest([Alert(one) for one in labels])
    texts: set[str] = set()

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if " IN (" in statement:
            texts.add(statement)

    event.listen(engine.store.engine, "before_cursor_execute", record)
    for k in range(1, len(labels) + 1):  # k alerts resolve, then fire again: k known alerts per POST
        engine.ingest([Alert(one, status=AlertStatus.RESOLVED) for one in labels[:k]])
        clock.advance(1)
        engine.tick()  # k incidents quiet: k rows read
        engine.ingest([Alert(one) for one in labels[:k]])
    assert len(texts) <= 4 * 4, sorted(texts)  # a few query sites, each at most IN_LIST_SIZES' lengths


def test_the_announcements_of_incidents_whose_delay_passed_are_stored_in_one_statement(
    db: str, clock: FakeClock
) -> None:
    # An UPDATE stamps them all; the read of those it left (opened in the instant they were announced)
    # and an UPDATE per one of them came after it at every announcement.
    engine = _engine(db, clock, announce_delay_seconds=10)
    engine.subscribe(lambda change: None)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"n{k}"}) for k in range(3)])
    stamping: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        words = " ".join(statement.split())
        if words.startswith(
            ("UPDATE incidents SET announced_at", "SELECT incidents.id, incidents.opened_at FROM")
        ):
            stamping.append(words.split()[0])

    event.listen(engine.store.engine, "before_cursor_execute", record)
    clock.advance(10)
    engine.tick()
    assert stamping == ["UPDATE"]
    assert [r.announced_at for r, _ in engine.store.list_rows()] == [clock.now()] * 3


def test_a_rebuild_reads_the_merges_of_incidents_whose_alerts_resolved_in_one_query_not_one_each(
    db: str, clock: FakeClock
) -> None:
    # Incidents whose alerts resolved wait for their quiet period; whether each took alerts of an earlier
    # opening in a merge was one timeline read each: 24,000 of them took half of serve's minute-long start.
    engine = _engine(db, clock)
    down = [{"alertname": "NodeDown", "cluster": f"c{k}", "node": "x1"} for k in range(20)]
    engine.ingest([Alert(labels) for labels in down])
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED) for labels in down])
    assert len(_open(engine)) == 20
    reads: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if "FROM timeline" in statement:
            reads.append(statement)

    event.listen(engine.store.engine, "before_cursor_execute", record)
    engine._reload()  # as at a start, or after a failed transaction
    assert len(reads) <= 3, reads  # a few reads of the timeline in all, not one per incident (20)
    assert len(_open(engine)) == 20


def test_the_collector_is_paused_during_a_rebuild_and_restored_after_it(
    db: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(db, clock)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "x1"})])
    seen: list[bool] = []
    monkeypatch.setattr(engine, "_track_silenced", lambda session, ids: seen.append(gc.isenabled()))
    assert gc.isenabled()
    engine._reload()  # at start, and after a failed transaction
    engine._rebuild_after_failure()
    assert seen == [False, False]
    assert gc.isenabled()
    assert len(_open(engine)) == 1

    def failing(session: object, ids: object) -> None:
        seen.append(gc.isenabled())
        raise OperationalError("SELECT", {}, Exception("the store went away"))

    monkeypatch.setattr(engine, "_track_silenced", failing)
    with pytest.raises(OperationalError):
        engine._reload()
    assert gc.isenabled()
    engine._rebuild_after_failure()  # the failure swallowed: marked stale, the collector back on
    assert engine._stale
    assert seen == [False, False, False, False]
    assert gc.isenabled()
    gc.disable()  # a caller's pause is kept
    try:
        with pytest.raises(OperationalError):
            engine._reload()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_a_start_reads_the_statuses_of_firing_alerts_only_and_an_alert_of_the_history_back_reads_as_before(
    tmp_path: Path,
) -> None:
    # serve read every stored alert's status at start, those of the whole retention period's resolved alerts
    # too (303,001 beside 100,000 resolved incidents: 1.2 s and 60 MB): it needs them to tell a repeat from a
    # change, and an alert it must read from an alert it stores new. It reads the firing ones (as it did
    # for the inhibitor), and a resolved one when it comes again: the same answers as a serve never restarted.
    db = str(tmp_path / "s.db")
    migrated_sqlite(tmp_path / "s.db").dispose()
    shutil.copyfile(db, tmp_path / "kept.db")
    assert history_then_back(db, restart=True) == history_then_back(str(tmp_path / "kept.db"), restart=False)
    engine = _engine(db, FakeClock())
    read: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if "FROM alerts" in statement:
            read.append(" ".join(statement.split()))

    event.listen(engine.store.engine, "before_cursor_execute", record)
    engine._reload()  # as at a start
    assert read and all(
        " WHERE alerts.status = " in s or " WHERE alerts.incident_id IN " in s for s in read
    ), read
    firing = {fp for fp, status in engine._status.items() if status == AlertStatus.FIRING.value}
    assert set(engine._status) == firing and len(firing) == 2  # x1 and x2 fire; x0 is history

"""Retention: resolved history past the retention period goes; open incidents and recent history stay."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, event, func, select
from sqlalchemy.orm import Session

from alerting import retention
from alerting.engine import IncidentEngine
from alerting.matchers import parse_matcher
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import Outbox
from alerting.outbox_tables import DISCARDED, FAILED, PENDING, NotificationThread
from alerting.store import IncidentNotFound
from alerting.store_models import AlertRow, SilenceRow, TimelineRow
from gpuwarden.api_metrics import ApiMetrics
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.limits import MAX_RETENTION_DAYS, MAX_WINDOW_SECONDS
from gpuwarden.model import Alert, AlertStatus, IncidentState
from tests.alerting.outbox_destinations import Destination

DAY = 86_400.0
NODE_DOWN = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _engine(sql: Engine, clock: FakeClock, **cfg: object) -> IncidentEngine:
    cfg.setdefault("announce_delay_seconds", 0)
    cfg.setdefault("quiet_period_seconds", 300)
    return IncidentEngine(sql, clock, AlertingConfig(**cfg))  # type: ignore[arg-type]


def _resolved_incident(engine: IncidentEngine, clock: FakeClock, labels: dict[str, str]) -> str:
    """Fire, resolve, and let the quiet period pass: the id of a resolved incident."""
    engine.ingest([Alert(labels)])
    incident_id = engine.store.get(next(iter(engine.open_incident_ids()))).id
    clock.advance(60)
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])
    clock.advance(301)
    engine.tick()
    assert engine.store.get(incident_id).state is IncidentState.RESOLVED
    return incident_id


def _rows(sql: Engine, table: type) -> int:
    with sql.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_resolved_incident_past_retention_goes_with_its_alerts_and_timeline(
    sql: Engine, clock: FakeClock
) -> None:
    engine = _engine(sql, clock, retention_days=30)
    old = _resolved_incident(engine, clock, NODE_DOWN)
    clock.advance(30 * DAY + 1)
    engine.tick()
    with pytest.raises(IncidentNotFound):
        engine.store.get(old)
    assert engine.store.alert(Alert(NODE_DOWN).fingerprint) is None
    assert (_rows(sql, AlertRow), _rows(sql, TimelineRow)) == (0, 0)
    # The same alert firing again is a new incident, not the forgotten one reopened.
    engine.ingest([Alert(NODE_DOWN)])
    [new] = engine.open_incident_ids()
    assert new != old
    assert engine.store.get(new).timeline[0].kind == "opened"


def test_history_younger_than_retention_stays_and_reopens(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock, retention_days=30, reopen_window_seconds=40 * DAY)
    old = _resolved_incident(engine, clock, NODE_DOWN)
    clock.advance(29 * DAY)
    engine.tick()
    assert engine.store.get(old).state is IncidentState.RESOLVED
    engine.ingest([Alert(NODE_DOWN)])
    assert engine.store.get(old).state is IncidentState.TRIGGERED


def test_an_open_incident_keeps_its_old_resolved_alerts(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock, retention_days=30)
    xid = {"alertname": "GPUXid", "cluster": "c1", "Hostname": "x1", "gpu": "0", "xid": "79"}
    engine.ingest([Alert(NODE_DOWN), Alert(xid)])
    [incident_id] = engine.open_incident_ids()
    engine.ingest([Alert(xid, status=AlertStatus.RESOLVED)])
    clock.advance(31 * DAY)
    engine.tick()
    incident = engine.store.get(incident_id)
    assert incident.state is not IncidentState.RESOLVED
    assert len(incident.alert_fingerprints) == 2


def test_resolved_alerts_in_no_incident_go_in_slices(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock, retention_days=7)
    # Resolved before they were ever seen firing: stored, in no incident (1,200 > one 500-row slice).
    engine.ingest([Alert({**NODE_DOWN, "node": f"n{i}"}, status=AlertStatus.RESOLVED) for i in range(1_200)])
    clock.advance(6 * DAY)
    assert len(engine.prune().alerts) == 0
    clock.advance(DAY + 1)
    assert len(engine.prune().alerts) == 1_200
    assert _rows(sql, AlertRow) == 0
    # One of them firing now is a new alert: it opens an incident.
    engine.ingest([Alert({**NODE_DOWN, "node": "n7"})])
    assert len(list(engine.open_incident_ids())) == 1


def test_firing_alerts_are_never_pruned_however_old(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock, retention_days=7)
    engine.ingest([Alert(NODE_DOWN)])
    clock.advance(100 * DAY)
    engine.tick()
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and row.status == AlertStatus.FIRING.value


def test_ended_silences_past_retention_go_and_active_ones_stay(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock, retention_days=7)
    now = clock.now()
    engine.add_silence([parse_matcher('node="x1"')], now, now + timedelta(hours=1), "alice")
    engine.add_silence([parse_matcher('node="x2"')], now, now + timedelta(days=365), "bob")
    clock.advance(8 * DAY)
    assert engine.prune().silences == 1
    assert _rows(sql, SilenceRow) == 1
    assert [s.created_by for s in engine.silences()] == ["bob"]


def test_retention_zero_keeps_everything(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock, retention_days=0)
    old = _resolved_incident(engine, clock, NODE_DOWN)
    clock.advance(3_650 * DAY)
    engine.tick()
    assert engine.store.get(old).state is IncidentState.RESOLVED


def test_the_tick_prunes_at_most_hourly(sql: Engine, clock: FakeClock) -> None:
    engine = _engine(sql, clock, retention_days=1)
    engine.tick()  # the first tick prunes (nothing yet)
    engine.ingest([Alert(NODE_DOWN, status=AlertStatus.RESOLVED)])
    clock.advance(DAY + 1)
    engine.tick()
    assert _rows(sql, AlertRow) == 0
    engine.ingest([Alert({**NODE_DOWN, "node": "x2"}, status=AlertStatus.RESOLVED)])
    clock.advance(DAY + 1)
    engine.tick()  # a day later: due again
    clock.advance(60)
    engine.ingest([Alert({**NODE_DOWN, "node": "x3"}, status=AlertStatus.RESOLVED)])
    clock.advance(DAY + 1)
    engine.tick()
    assert _rows(sql, AlertRow) == 0
    registry = CollectorRegistry()
    registry.register(ApiMetrics(engine))
    assert registry.get_sample_value("gpuwarden_alerts_pruned_total") == 3


def test_sent_notifications_of_a_pruned_incident_go_and_queued_ones_stay(
    sql: Engine, clock: FakeClock, recorder: SlackRecorder
) -> None:
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    outbox = Outbox(sql, [SlackNotifier(client, "#gpu-incidents")], clock)
    engine = _engine(sql, clock, retention_days=30)
    engine.subscribe(outbox)
    delivered = _resolved_incident(engine, clock, NODE_DOWN)
    outbox.dispatch_due()
    recorder.stop()  # Slack down: the second incident's messages wait
    queued = _resolved_incident(engine, clock, {**NODE_DOWN, "node": "x2"})
    outbox.dispatch_due()
    assert outbox.thread("slack", delivered) is not None
    clock.advance(31 * DAY)
    assert engine.prune().incidents == 2
    assert [m.incident_id for m in outbox.messages()] == [queued] * len(outbox.messages(PENDING))
    assert outbox.messages(PENDING), "a message Slack has not taken yet is never dropped"
    assert outbox.thread("slack", delivered) is None


def test_the_longest_windows_and_retention_the_config_allows_still_ingest_tick_and_prune(
    sql: Engine, clock: FakeClock
) -> None:
    longest = MAX_WINDOW_SECONDS  # past it, `now - window` left the datetime range and alerts were lost
    engine = _engine(
        sql,
        clock,
        correlation_window_seconds=longest,
        quiet_period_seconds=longest,
        announce_delay_seconds=longest,
        reopen_window_seconds=longest,
        flap_window_seconds=longest,
        resolve_timeout_seconds=longest,
        retention_days=MAX_RETENTION_DAYS,
    )
    engine.ingest([Alert(NODE_DOWN)])
    for _ in range(3):
        clock.advance(2 * 3600)  # past the hourly retention pass
        engine.tick()
    assert len(engine.open_incident_ids()) == 1
    engine.ingest([Alert(NODE_DOWN, status=AlertStatus.RESOLVED)])
    clock.advance(longest + 1)
    engine.tick()
    assert not engine.open_incident_ids()


def test_discarded_notifications_of_a_pruned_incident_go_with_it(sql: Engine, clock: FakeClock) -> None:
    outbox = Outbox(sql, [Destination("webhook:ops", mode="refused")], clock)
    engine = _engine(sql, clock, retention_days=30)
    engine.subscribe(outbox)
    _resolved_incident(engine, clock, NODE_DOWN)
    outbox.dispatch_due()
    dropped = outbox.discard("webhook:ops", [FAILED], by="alice", dry_run=False).counts[FAILED]
    assert dropped > 0 and outbox.counts() == {DISCARDED: dropped}
    clock.advance(31 * DAY)
    assert engine.prune().incidents == 1
    assert outbox.messages() == []


def _two_notifiers_and_threads(sql: Engine, clock: FakeClock) -> tuple[IncidentEngine, Outbox, str, str]:
    """Two notifiers, each with a thread of each incident: one resolved 31 days before the end, one 2 days."""
    outbox = Outbox(sql, [Destination("webhook:a"), Destination("webhook:b")], clock)
    engine = _engine(sql, clock, retention_days=30)
    engine.subscribe(outbox)
    old = _resolved_incident(engine, clock, NODE_DOWN)
    outbox.dispatch_due()
    clock.advance(29 * DAY)
    young = _resolved_incident(engine, clock, {**NODE_DOWN, "node": "x2"})
    outbox.dispatch_due()
    with Session(sql) as session, session.begin():
        for notifier in ("webhook:a", "webhook:b"):
            for incident in (old, young):
                session.add(NotificationThread(notifier=notifier, incident_id=incident, updated_at=0.0))
    clock.advance(2 * DAY)
    return engine, outbox, old, young


def test_sent_notifications_and_threads_of_a_pruned_incident_go_for_every_notifier(
    sql: Engine, clock: FakeClock
) -> None:
    engine, outbox, old, young = _two_notifiers_and_threads(sql, clock)
    assert {m.notifier for m in outbox.messages()} == {"webhook:a", "webhook:b"}
    assert engine.prune().incidents == 1
    assert {(m.notifier, m.incident_id) for m in outbox.messages()} == {
        ("webhook:a", young),
        ("webhook:b", young),
    }
    assert [outbox.thread(n, old) for n in ("webhook:a", "webhook:b")] == [None, None]
    assert None not in [outbox.thread(n, young) for n in ("webhook:a", "webhook:b")]


def test_retention_finds_the_notifications_of_pruned_incidents_by_index(
    sql: Engine, clock: FakeClock
) -> None:
    # Asked by incident alone, SQLite read every sent message of the whole history for each slice of 500
    # incidents (2.5 s a slice beside 600,000 messages, the engine's lock held: benchmarks/README.md).
    engine, _outbox, _old, _young = _two_notifiers_and_threads(sql, clock)
    sent: list[tuple[str, object]] = []

    def record(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        where = statement.split("WHERE", 1)[-1]
        if "notification_" in statement.split("WHERE", 1)[0] and "incident_id IN" in where:
            sent.append((statement, parameters))

    event.listen(sql, "before_cursor_execute", record)
    try:
        assert engine.prune().incidents == 1
    finally:
        event.remove(sql, "before_cursor_execute", record)
    with sql.connect() as conn:
        plans = [
            " / ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}", p))  # type: ignore[arg-type]
            for s, p in sent
        ]
    assert len(plans) >= 3  # the messages deleted, those left, the threads
    assert [p for p in plans if "incident_id=?" not in p] == []


class _SlowToWake:
    """A re-entrant lock whose blocked takers notice it is free only every 10 ms, as a thread on a busy
    machine wakes up late: the thread that let go takes it again first."""

    def __init__(self) -> None:
        self._inner = threading.RLock()

    def acquire(self, blocking: bool = True) -> bool:
        while not self._inner.acquire(blocking=False):
            if not blocking:
                return False
            time.sleep(0.01)
        return True

    def release(self) -> None:
        self._inner.release()


def test_a_thread_waiting_for_the_engine_takes_it_between_two_slices_of_a_prune(
    sql: Engine, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The engine's lock is not fair: the pruning thread took it again for its next slice before a waiting
    # one woke up, and an alert posted during a first prune waited 7.6-13.9 s to be applied, against
    # slices of 0.5-0.8 s.
    monkeypatch.setattr(retention, "PRUNE_SLICE", 1)
    engine = _engine(sql, clock, retention_days=1)
    for node in ("x1", "x2", "x3", "x4"):
        _resolved_incident(engine, clock, {**NODE_DOWN, "node": node})
    clock.advance(2 * DAY)
    monkeypatch.setattr(engine.lock, "_lock", _SlowToWake())
    slices: list[str] = []
    took_it_after: list[int] = []

    def wait_for_the_engine() -> None:
        with engine.lock:
            took_it_after.append(len(slices))

    waiter = threading.Thread(target=wait_for_the_engine)

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("DELETE FROM incidents"):
            slices.append(statement)
            if len(slices) == 1:  # the first slice holds the lock: the waiter queues for it
                waiter.start()
                while not engine.lock._queued:
                    time.sleep(0.001)

    event.listen(sql, "before_cursor_execute", record)
    try:
        assert engine.prune().incidents == 4
    finally:
        event.remove(sql, "before_cursor_execute", record)
    waiter.join()
    assert len(slices) == 4
    assert took_it_after == [1]

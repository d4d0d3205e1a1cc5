"""The outbox's tables: how one incident's messages are found in a long history."""

from __future__ import annotations

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session

from alerting.engine import IncidentEngine
from alerting.outbox import Outbox
from alerting.outbox_tables import SENT, OutboxMessage, stored_names
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert
from tests.alerting.outbox_destinations import Destination


def _two_incidents(sql: Engine) -> tuple[Outbox, list[str]]:
    """Two notifiers that took the openings of two incidents."""
    clock = FakeClock()
    outbox = Outbox(sql, [Destination("webhook:b"), Destination("webhook:a")], clock)
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0))
    engine.subscribe(outbox)
    for node in ("x1", "x2"):
        engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": node})])
    outbox.dispatch_due()
    return outbox, sorted(engine.open_incident_ids())


def test_stored_names_are_each_notifier_once_in_order(sql: Engine) -> None:
    _two_incidents(sql)
    with Session(sql) as session:
        assert stored_names(session, OutboxMessage.notifier) == ["webhook:a", "webhook:b"]


def test_one_incidents_messages_and_counts_are_read_by_the_outbox_index(sql: Engine) -> None:
    # Asked by incident alone, SQLite read every message of the whole history: `outbox list --incident` took
    # 3.7 s beside 600,000 messages (its counts as long again); the index begins with the notifier.
    outbox, (one, other) = _two_incidents(sql)
    sent: list[tuple[str, object]] = []

    def record(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        if "FROM notification_outbox" in statement and "incident_id =" in statement:
            sent.append((statement, parameters))

    event.listen(sql, "before_cursor_execute", record)
    try:
        messages = outbox.messages(incident_id=one, limit=50)
        counts = outbox.counts(one)
    finally:
        event.remove(sql, "before_cursor_execute", record)
    assert sorted((m.notifier, m.incident_id) for m in messages) == [("webhook:a", one), ("webhook:b", one)]
    assert counts == {SENT: 2}
    assert len(outbox.messages()) == 4 and other != one
    with sql.connect() as conn:
        plans = [
            " / ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}", p))  # type: ignore[arg-type]
            for s, p in sent
        ]
    assert len(plans) == 2
    assert [p for p in plans if "incident_id=?" not in p] == []


def test_stored_names_are_read_in_one_statement_through_the_index_however_many(sql: Engine) -> None:
    # One statement per name and one more: on PostgreSQL a round trip each (5 to 30 ms apiece on a loaded
    # client), most of `outbox list --incident` and its counts, twice in each retention slice.
    _two_incidents(sql)
    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        sent.append(statement)

    event.listen(sql, "before_cursor_execute", record)
    try:
        with Session(sql) as session:
            names = stored_names(session, OutboxMessage.notifier)
    finally:
        event.remove(sql, "before_cursor_execute", record)
    assert names == ["webhook:a", "webhook:b"]
    assert len(sent) == 1, sent
    with sql.connect() as conn:
        plan = [str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sent[0]}")]
    steps = [p for p in plan if "notification_outbox" in p]
    assert len(steps) == 2 and all(p.startswith("SEARCH") and "INDEX" in p for p in steps), plan

"""The plans a store chooses for the queries that read resolved incidents by when they resolved (and by
their root's place), the silences of incidents by incident, and those of any read (``statement_plans``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import cast

from sqlalchemy import Engine, event, insert, text
from sqlalchemy.orm import Session

from alerting.engine import IncidentEngine
from alerting.notifiers.base import Notifier
from alerting.outbox import Outbox
from alerting.reminding import stored_pages
from alerting.root_places import root_key
from alerting.store_models import IncidentRow
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus


def resolved_incident_query_plans(
    engine: Engine, explain: str, *setup: str, beside: int = 0
) -> list[tuple[str, str]]:
    """Resolve one incident in the (migrated) store behind ``engine``, then bring a new fault (recurrence
    asks) and prune (retention asks): each query sent that picks incidents by ``resolved_at`` and its plan,
    as ``explain`` (``EXPLAIN QUERY PLAN``, ``EXPLAIN``) gives it after the ``setup`` statements.
    ``beside``: that many more incidents resolved just before, each rooted at a node of its own (written
    directly: a planner that reads the table's statistics, PostgreSQL's, sees a day's worth)."""
    clock = FakeClock()
    incidents = IncidentEngine(
        engine, clock, AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=1)
    )
    down = {"alertname": "NodeDown", "cluster": "c1", "instance": "n1:9100", "job": "node"}
    incidents.ingest([Alert(down)])
    incidents.ingest([Alert(down, status=AlertStatus.RESOLVED)])
    for _ in range(3):
        clock.advance(1)
        incidents.tick()
    if beside:
        _resolved_beside(engine, clock.now(), beside)
    sent: list[tuple[str, object]] = []

    def record(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        where = statement.split("WHERE", 1)[-1] if "WHERE" in statement else ""
        if statement.startswith("SELECT") and "FROM incidents" in statement and "resolved_at" in where:
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        incidents.ingest([Alert({"alertname": "GPULost", "cluster": "c1", "Hostname": "n2", "gpu": "0"})])
        incidents.prune()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    with engine.connect() as conn:
        for statement in setup:
            conn.exec_driver_sql(statement)
        return [
            (s, " / ".join(str(row[-1]) for row in conn.exec_driver_sql(f"{explain} {s}", p)))  # type: ignore[arg-type]
            for s, p in sent
        ]


def _resolved_beside(engine: Engine, at: datetime, count: int) -> None:
    """``count`` incidents resolved at ``at``, each rooted at node ``b<i>`` of cluster c1."""
    rows = []
    for i in range(count):
        target = {"type": "node", "cluster": "c1", "rack": "?", "name": f"b{i}"}
        rows.append(
            {
                "id": f"inc-b{i}",
                "title": "",
                "priority": "P2",
                "state": "resolved",
                "root_kind": "node_down",
                "root_target": target,
                "root_key": root_key(target),
                "opened_at": at,
                "updated_at": at,
                "last_alert_at": at,
                "first_onset_at": at,
                "resolved_at": at,
                "impact": {},
                "actions": [],
                "reopen_count": 0,
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(IncidentRow.__table__), rows)


def resolved_incident_indexes(plans: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """For each query of ``resolved_incident_query_plans`` the index it should be read through (recurrence
    by the new fault's places: ``root_key``'s; when the latest resolved and retention: ``(state,
    resolved_at)``) and its plan."""
    return [
        (
            "ix_incidents_root_key_state_merged_into_resolved_at"
            if "root_key" in statement.split("WHERE", 1)[-1]
            else "ix_incidents_state_resolved_at",
            plan,
        )
        for statement, plan in plans
    ]


def incident_silence_query(engine: Engine) -> tuple[str, object]:
    """The query (statement, parameters) by which the reminders read the silences of the incidents due
    (``reminding.stored_pages``), as sent to the store behind ``engine`` (migrated to the newest revision)."""
    sent: list[tuple[str, object]] = []

    def record(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        if statement.startswith("SELECT") and "FROM silences" in statement:
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        with Session(engine) as session:
            stored_pages(session, ["inc-a", "inc-b"], 10)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    [query] = sent
    return query


def incident_silence_query_plan(
    engine: Engine, explain: str, *setup: str, query: tuple[str, object] | None = None
) -> str:
    """The plan, as ``explain`` gives it after the ``setup`` statements, of ``query`` (by default
    ``incident_silence_query``'s) in the store behind ``engine``."""
    statement, parameters = query or incident_silence_query(engine)
    with engine.connect() as conn:
        for one in setup:
            conn.exec_driver_sql(one)
        rows = conn.exec_driver_sql(f"{explain} {statement}", parameters)  # type: ignore[arg-type]
        return " / ".join(str(row[-1]) for row in rows)


def statement_plans(
    engine: Engine, read: Callable[[], object], table: str, explain: str = "EXPLAIN QUERY PLAN", *setup: str
) -> list[str]:
    """The plan of each statement ``read`` sent that reads ``table`` (SQLite's ``EXPLAIN QUERY PLAN`` or
    PostgreSQL's ``EXPLAIN``, after the ``setup`` statements), its lines joined by " / "."""
    sent: list[tuple[str, object]] = []

    def record(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        if f"FROM {table}" in statement:
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        read()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    with engine.connect() as conn:
        for statement in setup:
            conn.exec_driver_sql(statement)
        return [
            " / ".join(str(row[-1]) for row in conn.exec_driver_sql(f"{explain} {s}", p))  # type: ignore[arg-type]
            for s, p in sent
        ]


def firing_alert_plans(engine: Engine, explain: str, *setup: str) -> dict[str, list[str]]:
    """An alert fired in the (migrated) store behind ``engine``; the plans of the statements that read
    ``alerts`` in the firing alerts' list (``GET /api/v2/alerts``), in a tick and in the engine's rebuild."""
    incidents = IncidentEngine(engine, FakeClock(), AlertingConfig(announce_delay_seconds=0))
    incidents.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "x1"})])
    return {
        name: statement_plans(engine, read, "alerts", explain, *setup)
        for name, read in (
            ("listed", incidents.store.firing_alerts),
            ("ticked", incidents.tick),
            ("rebuilt", incidents._reload),
        )
    }


def retry_plans(engine: Engine, explain: str, *setup: str) -> list[str]:
    """Messages of three incidents in the store behind ``engine``, one of them failed; the plans of the
    statements of ``outbox retry`` that read the outbox (the failed ones, then what went after them)."""
    rows = [("inc-a", "sent"), ("inc-b", "failed"), ("inc-b", "sent"), ("inc-c", "failed"), ("inc-d", "sent")]
    with engine.begin() as conn:
        for n, (incident, status) in enumerate(rows):
            conn.execute(
                text(
                    "INSERT INTO notification_outbox (notifier, incident_id, idempotency_key, payload,"
                    " status, attempts, created_at, next_attempt_at, priority)"
                    " VALUES ('slack', :incident, :key, '{}', :status, 1, 0, 0, 'P2')"
                ),
                {"incident": incident, "key": f"k{n}", "status": status},
            )
    outbox = Outbox(engine, [cast(Notifier, NamedNotifier("slack"))], FakeClock())
    return statement_plans(engine, outbox.requeue_failed, "notification_outbox", explain, *setup)


class NamedNotifier:
    """A notifier that is only its name: a retry queues the messages of the configured ones."""

    def __init__(self, name: str) -> None:
        self.name = name

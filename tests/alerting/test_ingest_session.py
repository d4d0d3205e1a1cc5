"""The engine's session finds incidents a transaction opened without flushing them, and writes each once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, event, select

from alerting.engine import IncidentEngine
from alerting.ingest_session import IngestSession, add_opened
from alerting.store_models import AlertRow, IncidentRow
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert

AT = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _incident(incident_id: str) -> IncidentRow:
    return IncidentRow(
        id=incident_id,
        title="",
        priority="P3",
        state="triggered",
        root_kind="node_down",
        root_target={"type": "node", "name": "n1", "cluster": "c1"},
        opened_at=AT,
        last_opened_at=AT,
        updated_at=AT,
        last_alert_at=AT,
        first_onset_at=AT,
        impact={},
        actions=[],
        reopen_count=0,
    )


def test_an_incident_a_post_opens_is_stored_by_one_insert_with_its_title_and_impact(
    sql: Engine,
) -> None:
    engine = IncidentEngine(sql, FakeClock(), AlertingConfig(announce_delay_seconds=0))
    statements: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if " incidents " in f" {statement} " and not statement.startswith("SELECT"):
            statements.append(statement.split(maxsplit=1)[0])

    event.listen(sql, "before_cursor_execute", record)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "n1"})])
    assert statements == ["INSERT"]  # flushed when opened, it was an INSERT and an UPDATE of its title
    [row] = engine.store.list_rows()
    assert row[0].title and row[0].impact


def test_get_finds_an_incident_opened_in_the_transaction_before_any_flush(sql: Engine) -> None:
    with IngestSession(sql) as session, session.begin(), session.no_autoflush:
        row = _incident("inc-a")
        add_opened(session, row)
        assert row in session.new  # not flushed
        assert session.get(IncidentRow, "inc-a") is row


def test_an_incident_opened_in_a_transaction_that_rolled_back_is_not_found_after_it(sql: Engine) -> None:
    session = IngestSession(sql)
    with pytest.raises(RuntimeError), session.begin():
        add_opened(session, _incident("inc-a"))
        raise RuntimeError("the transaction fails")
    with session.begin():
        assert session.get(IncidentRow, "inc-a") is None
    session.close()


def test_an_alert_moved_into_an_incident_opened_in_its_transaction_is_flushed_after_the_incident(
    sql: Engine,
) -> None:
    # The unit of work orders tables by their relationships, else by class name: AlertRow's UPDATE came
    # before IncidentRow's INSERT, which the foreign key refused.
    with IngestSession(sql) as session, session.begin():
        add_opened(session, _incident("inc-a"))
        session.flush()
        session.add(
            AlertRow(
                fingerprint="f1",
                labels={"alertname": "GPULost"},
                annotations={},
                status="firing",
                starts_at=AT,
                source="rule",
                first_seen=AT,
                last_seen=AT,
                incident_id="inc-a",
            )
        )
    with IngestSession(sql) as session, session.begin(), session.no_autoflush:
        stored = session.get(AlertRow, "f1")
        assert stored is not None
        add_opened(session, _incident("inc-b"))
        stored.incident_id = "inc-b"
        session.flush()
    with IngestSession(sql) as session:
        assert session.scalar(select(AlertRow.incident_id)) == "inc-b"

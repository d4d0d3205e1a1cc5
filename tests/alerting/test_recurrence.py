"""When the latest incident resolved, remembered between transactions, is read again whenever it may move.

A new fault comes back into the incident it resolved within the reopen window (``IncidentJoining
._reopen_recurring``); the engine remembers that none resolved in the window (``LatestResolved``) instead of
asking the store at every new fault, and each of these tests fails when one way the answer is forgotten is
removed.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import Engine, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from alerting.engine import IncidentEngine
from alerting.recurrence import LatestResolved
from alerting.root_places import root_key
from alerting.store_models import IncidentRow
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, IncidentState
from tests.alerting.recurrence_shapes import near_both_ways


def _node_down(node: str) -> list[Alert]:
    """A node down: ``NodeDown`` and two of its GPUs lost."""
    base = {"cluster": "c1", "severity": "critical"}
    down = Alert({**base, "alertname": "NodeDown", "instance": f"{node}:9100", "job": "node"})
    return [down, *(Alert({**base, "alertname": "GPULost", "Hostname": node, "gpu": str(g)}) for g in (0, 1))]


def _gpu_lost(node: str, gpu: int) -> Alert:
    """Another GPU of ``node`` lost: not an alert of its incident, the fault back through another alert."""
    return Alert(
        {"cluster": "c1", "severity": "critical", "alertname": "GPULost", "Hostname": node, "gpu": str(gpu)}
    )


def _resolved(engine: IncidentEngine, clock: FakeClock, node: str) -> str:
    """Open the fault of ``node`` and let it resolve (quiet for the quiet period): its incident."""
    before = set(engine.open_incident_ids())
    engine.ingest(_node_down(node))
    [incident_id] = set(engine.open_incident_ids()) - before
    clock.advance(1)
    engine.ingest([Alert(a.labels, status=AlertStatus.RESOLVED) for a in _node_down(node)])
    clock.advance(4)
    engine.tick()
    assert engine.store.get(incident_id).state is IncidentState.RESOLVED
    return incident_id


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def engine(sql: Engine, clock: FakeClock) -> IncidentEngine:
    return IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=3))


def test_a_fault_back_after_its_incident_resolved_reopens_it_though_none_had_resolved_when_last_asked(
    engine: IncidentEngine, clock: FakeClock
) -> None:
    engine.ingest(_node_down("n9"))  # a new fault asks: none resolved
    first = _resolved(engine, clock, "n1")  # the tick sets it resolved
    clock.advance(60)
    engine.ingest([_gpu_lost("n1", 5)])  # the node down again: a GPU lost before its NodeDown fires
    assert first in engine.open_incident_ids()
    assert engine.store.get(first).state is IncidentState.TRIGGERED


def test_a_resolution_the_answer_was_read_before_the_flush_of_is_read_after_its_commit(
    engine: IncidentEngine, clock: FakeClock, sql: Engine
) -> None:
    first = _resolved(engine, clock, "n1")
    reopened_at = clock.now()
    with Session(sql) as session, session.begin():
        session.execute(
            update(IncidentRow)
            .where(IncidentRow.id == first)
            .values(state=IncidentState.TRIGGERED.value, resolved_at=None)
        )
    latest = LatestResolved()
    with Session(sql) as session, session.begin(), session.no_autoflush:
        row = session.get(IncidentRow, first)
        assert row is not None
        row.state, row.resolved_at = IncidentState.RESOLVED.value, reopened_at  # not flushed yet
        assert latest.none_since(session, reopened_at)  # as the store had it when asked
    with Session(sql) as session:
        assert not latest.none_since(session, reopened_at)  # committed since


def test_forgotten_it_is_read_from_the_store_again(
    engine: IncidentEngine, clock: FakeClock, sql: Engine
) -> None:
    first = _resolved(engine, clock, "n1")
    latest = LatestResolved()
    later = clock.now() + timedelta(hours=1)
    with Session(sql) as session:
        assert latest.none_since(session, later)
    with Session(sql) as session, session.begin():  # not through the ORM: no attribute event counts it
        session.execute(update(IncidentRow).where(IncidentRow.id == first).values(resolved_at=later))
    latest.forget()
    with Session(sql) as session:
        assert not latest.none_since(session, later)


def test_after_a_failed_transaction_the_engine_reads_when_the_latest_resolved_again(
    engine: IncidentEngine, clock: FakeClock, sql: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What the failed transaction wrote rolled back; what the answer read in it may not have (here: the
    # store changed underneath, as a rollback would change it).
    first = _resolved(engine, clock, "n1")
    clock.advance(engine.config.reopen_window_seconds + 60)
    engine.ingest(_node_down("n9"))  # asks: the resolution is out of the window now
    with Session(sql) as session, session.begin():
        session.execute(update(IncidentRow).where(IncidentRow.id == first).values(resolved_at=clock.now()))
    finish = engine._finish

    def failing(batch: object) -> None:
        monkeypatch.setattr(engine, "_finish", finish)
        raise OperationalError("INSERT", {}, Exception("disk I/O error"))

    monkeypatch.setattr(engine, "_finish", failing)
    with pytest.raises(OperationalError):
        engine.ingest(_node_down("n8"))
    clock.advance(1)
    engine.ingest([_gpu_lost("n1", 5)])
    assert first in engine.open_incident_ids()


def test_a_new_fault_asks_about_the_incidents_the_json_query_picked_for_every_shape_of_root_and_path(
    sql: Engine,
) -> None:
    """Recurrence picks the resolved incidents near a new fault's node by their root's place key (0020):
    the same ones, for every shape, as when it read their roots out of the JSON (which incident a fault back
    reopens is chosen among them)."""
    picked = near_both_ways(sql)
    assert [(path, after) for path, _, after in picked] == [(path, before) for path, before, _ in picked]
    by_path = {path: after for path, _, after in picked}
    assert by_path[("c1", "?", "n1", "3")] == {
        "cluster-c1",
        "rack-c1-unknown",
        "node-c1-n1",
        "node-c1-n1-unracked",
        "gpu-n1",
    }
    assert by_path[("c2", "r1", "n1")] == {"rack-c2-r1", "node-c2-n1", "gpu-n1"}
    assert by_path[("c1", "?", 'n"1\\ü')] == {"cluster-c1", "rack-c1-unknown", "node-quoted", "gpu-quoted"}
    assert by_path[("c3", "?", "n9")] == set()


def test_an_incident_row_keys_its_root_as_it_opens_and_as_the_root_moves(
    engine: IncidentEngine, clock: FakeClock, sql: Engine
) -> None:
    """``root_key`` is set with ``root_target`` through the ORM: at the opening and when the root moves."""

    def stored(incident_id: str) -> tuple[str, str | None, str | None]:
        with Session(sql) as session:
            row = session.get(IncidentRow, incident_id)
            assert row is not None
            return row.root_target["type"], row.root_key, root_key(row.root_target)

    engine.ingest([_gpu_lost("n1", 0)])
    [incident_id] = engine.open_incident_ids()
    kind, key, expected = stored(incident_id)
    assert (kind, key) == ("gpu", expected) and key is not None
    clock.advance(1)
    engine.ingest(_node_down("n1"))  # the node down: the root moves up to the node
    kind, key, expected = stored(incident_id)
    assert (kind, key) == ("node", expected) and key is not None

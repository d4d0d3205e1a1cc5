"""An incident that took others in, and is then taken in itself, hands them on: no chain of merged ones."""

from __future__ import annotations

import random
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, update

from alerting import scenarios as sc
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.store_models import AlertRow, IncidentRow
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, IncidentState
from tests.alerting.arrival_streams import _batches, _engine, _onset, _ranks
from tests.alerting.store_scenarios import START, _rows, a_merged_incident_shows_the_alerts_it_handed_over
from tests.migrated_store import migrated_sqlite


@pytest.mark.parametrize("seed", range(4))
def test_merged_incidents_name_the_incident_that_goes_on(tmp_path: Path, seed: int) -> None:
    # A switch fails on r07-n03, then the rack loses power: node incidents merge, then into the first one.
    alerts = sc.nvlink_switch_failure(7, 3, START) + sc.rack_failure(7, START + timedelta(seconds=30))
    rng = random.Random(seed)
    due_at = {
        a.fingerprint: ((a.starts_at or START) - START).total_seconds() + rng.random() * 30 for a in alerts
    }
    path = str(tmp_path / "gpuwarden.db")
    migrated_sqlite(Path(path)).dispose()
    clock = FakeClock(START.timestamp())
    engine = IncidentEngine(
        make_engine(path), clock, AlertingConfig(announce_delay_seconds=0), sc.fleet_inventory()
    )
    posted: set[str] = set()
    for step in range(25):
        due = [a for a in alerts if a.fingerprint not in posted and due_at[a.fingerprint] <= step * 5]
        rng.shuffle(due)
        for i in range(0, len(due), 8):
            engine.ingest(due[i : i + 8])
        posted |= {a.fingerprint for a in due}
        engine.tick()
        clock.advance(5)
    rows = {r.id: r for r in _rows(engine)}
    merged = [r for r in rows.values() if r.merged_into]
    assert merged, "the scenario merges incidents"
    assert all(rows[r.merged_into].merged_into is None for r in merged)


def test_an_incident_merged_twice_in_one_post_names_the_incident_that_goes_on(tmp_path: Path) -> None:
    # A is taken in by B and B by C while one POST is ingested: A must name C, not be left merged into
    # nothing (a blank resolved row in the incident list, resolvable again, counted in postmortems).
    alerts = _ranks(
        sc.driver_rollout_xids((7, 8), START, stalled_job=None)
        + sc.rack_failure(7, START + timedelta(seconds=20))
    )
    random.Random(1).shuffle(alerts)
    engine = _engine(tmp_path, max(_onset(a) for a in alerts))
    for post in _batches(alerts, 64):
        engine.ingest(post)
    rows = {r.id: r for r in _rows(engine)}
    told_merged = [i for i in rows if any(e.data.get("into") for e in engine.store.get(i).timeline)]
    assert told_merged, "the scenario merges incidents"
    assert [(i, rows[i].merged_into) for i in told_merged if rows[i].merged_into is None] == []
    listed = {row.id for row, _ in engine.store.list_rows()}
    assert listed.isdisjoint(told_merged)
    assert all(rows[rows[i].merged_into].merged_into is None for i in told_merged)


def test_an_alert_firing_again_through_a_merged_incident_is_on_the_timeline_of_the_one_that_goes_on(
    tmp_path: Path,
) -> None:
    """An alert whose row still names an incident merged into an open one (the merge moves every member's
    row, so only a store written otherwise has it) joined that open one with no timeline event at all,
    where a join says ``alert_added`` and a member's re-fire ``alert_firing``."""
    path = str(tmp_path / "gpuwarden.db")
    migrated_sqlite(Path(path)).dispose()
    clock = FakeClock(START.timestamp())
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(make_engine(path), clock, config, sc.fleet_inventory())

    def xid(node: str, gpu: int, status: AlertStatus = AlertStatus.FIRING) -> Alert:
        labels = {"alertname": "GPUXid", "cluster": "c1", "Hostname": node, "gpu": str(gpu), "xid": "79"}
        return Alert(labels, status=status)

    engine.ingest([xid("r02-n01", 3), xid("r02-n01", 4)])
    engine.ingest([xid("r05-n04", 1)])
    clock.advance(60)
    engine.ingest([xid("r02-n01", 3, AlertStatus.RESOLVED)])
    old, on = (
        engine.store.alert(xid(n, g).fingerprint).incident_id for n, g in (("r02-n01", 3), ("r05-n04", 1))
    )
    assert old is not None and on is not None and old != on
    with engine._sessions() as session, session.begin():  # `old` merged into `on`, its firing alert moved
        row = session.get(IncidentRow, old)
        assert row is not None
        row.merged_into, row.state, row.resolved_at = on, IncidentState.RESOLVED.value, clock.now()
        session.execute(
            update(AlertRow)
            .where(AlertRow.fingerprint == xid("r02-n01", 4).fingerprint)
            .values(incident_id=on)
        )
    engine = IncidentEngine(make_engine(path), clock, config, sc.fleet_inventory())  # a restart reads it
    clock.advance(60)
    engine.ingest([xid("r02-n01", 3)])
    fp = xid("r02-n01", 3).fingerprint
    assert engine.store.alert(fp).incident_id == on
    told = [
        e for e in engine.store.get(on).timeline if e.at == clock.now() and e.data.get("fingerprint") == fp
    ]
    assert [(e.kind, e.message) for e in told] == [("alert_added", "alert GPUXid XID 79 (r02-n01, 3) firing")]
    assert fp in {a.fingerprint for a in engine.store.alerts_of(on)}


def test_a_post_that_merges_many_incidents_reads_each_incident_row_once(tmp_path: Path) -> None:
    # A driver rollout reaches one GPU of every node (an incident each), then the next GPU of each: one POST
    # merges them all into the first. The session held an incident's row weakly, so the one that goes on was
    # read again by id at every merge, and each incident merged in more than once.
    alerts = sc.driver_rollout_xids((2, 3), START, stalled_job=None)
    halves = (
        [a for a in alerts if a.labels.get("gpu") == "0"],
        [a for a in alerts if a.labels.get("gpu") == "1"],
    )
    engine = _engine(tmp_path, max(_onset(a) for a in alerts))
    engine.ingest(halves[0])
    reads: list[object] = []

    def record(conn: object, cursor: object, statement: str, parameters: object, *_: object) -> None:
        if (
            statement.startswith("SELECT")
            and "FROM incidents" in statement
            and "incidents.id = ?" in statement
        ):
            reads.append(parameters)

    event.listen(engine.store.engine, "before_cursor_execute", record)
    try:
        engine.ingest(halves[1])
    finally:
        event.remove(engine.store.engine, "before_cursor_execute", record)
    assert len(halves[0]) > 10 and len(_open_ids(engine)) == 1, "the POST merges the rollout into one"
    assert len(reads) >= len(halves[0]) - 1, "the merged incidents' rows are read"
    assert [p for p, n in Counter(map(str, reads)).items() if n > 1] == []


def _open_ids(engine: IncidentEngine) -> list[str]:
    return [r.id for r in _rows(engine) if r.state != IncidentState.RESOLVED.value]


def test_the_incident_that_takes_another_in_says_what_that_one_was(tmp_path: Path) -> None:
    # Its thread said "• also: absorbed inc-3f2a... (10 alerts)": an id nobody on call knows by heart.
    path = str(tmp_path / "gpuwarden.db")
    migrated_sqlite(Path(path)).dispose()
    clock = FakeClock(START.timestamp())
    engine = IncidentEngine(
        make_engine(path), clock, AlertingConfig(announce_delay_seconds=0), sc.fleet_inventory()
    )
    node = sc.node_name(1, 1)
    labels = {"alertname": "GPULost", "Hostname": node, "gpu": "3", "UUID": sc.gpu_uuid(node, 3)}
    first = [Alert({**labels, "cluster": sc.CLUSTER}, starts_at=START), *sc.node_failure(1, 2, START)]
    engine.ingest(first)
    titles = {r.id: r.title for r in _rows(engine)}
    assert len(titles) == 2
    clock.advance(60)
    rack = Alert({"alertname": "RackPowerLoss", "rack": "r01", "cluster": sc.CLUSTER}, starts_at=clock.now())
    engine.ingest([*first, rack])
    (gone,) = [r.id for r in _rows(engine) if r.merged_into]
    (on,) = engine.open_incident_ids()
    (said,) = [e.message for e in engine.store.get(on).timeline if e.data.get("from") == gone]
    assert said.startswith(f"absorbed {gone} {titles[gone][:99]}")


def test_an_incident_merged_away_in_the_post_that_opened_it_has_the_title_and_priority_it_would_have_had(
    tmp_path: Path,
) -> None:
    # A rack loses power in one POST: its nodes' incidents open and merge in that transaction, before any
    # was assessed. Each merged one was listed and shown with no title, P3 and no impact.
    alerts = sc.rack_failure(7, START)
    engine = _engine(tmp_path, max(_onset(a) for a in alerts))
    engine.ingest(alerts)
    merged = [r for r in _rows(engine) if r.merged_into]
    assert merged, "the scenario merges incidents in one POST"
    for row in merged:
        incident = engine.store.get(row.id)
        added = [e for e in incident.timeline if e.kind == "alert_added"]
        own = [a for a in alerts if a.fingerprint in {fp for e in added for fp in e.data["fingerprints"]}]
        alone = _engine(tmp_path, max(_onset(a) for a in own))
        alone.ingest(own)
        [(expected, _)] = alone.store.list_rows()
        assert (row.title, row.priority, row.root_kind) == (
            expected.title,
            expected.priority,
            expected.root_kind,
        )
        assert row.impact["gpus_affected"] == expected.impact["gpus_affected"]
        absorbed = [
            e.message for e in engine.store.get(row.merged_into).timeline if e.data.get("from") == row.id
        ]
        assert absorbed == [f"absorbed {row.id} {row.title} ({len(own)} alert{'' if len(own) == 1 else 's'})"]


def test_an_incident_merged_into_another_shows_the_alerts_it_handed_over_not_none(tmp_path: Path) -> None:
    # A node's lost GPU, then its rack's power: the GPU's incident is merged into the rack's. The list, the
    # detail, its alerts and its postmortem said 0 alerts ("Evidence: 0 alerts (none)"): the one it had
    # is counted, listed and named, as on the incident that took it.
    a_merged_incident_shows_the_alerts_it_handed_over(str(tmp_path / "gpuwarden.db"))

from __future__ import annotations

from pathlib import Path

import pytest

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.notifiers.base import Notification
from alerting.outbox import Outbox
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, IncidentState
from tests.alerting.handoff_serve import _down, _kinds, _serve
from tests.alerting.outbox_only import Quiet


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "incidents.db")
    upgrade(make_engine(path))
    return path


def test_changes_committed_before_the_outbox_stored_them_reach_it_after_a_restart(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    engine, outbox = _serve(db, clock)
    lost = Alert({"alertname": "GPULost", "cluster": "c1", "Hostname": "r01-n01", "gpu": "0"})
    engine.ingest([lost])
    (incident_id,) = [r.id for r, _ in engine.store.list_rows()]
    assert _kinds(outbox) == [ChangeKind.OPENED]
    # The store drops (or serve is killed) right after each commit, before the outbox stores the change.
    monkeypatch.setattr(outbox, "enqueue", _down)
    nodes = [Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"r01-n0{n}"}) for n in range(1, 9)]
    engine.ingest(nodes)  # the service loses every replica: P2 → P0
    assert engine.store.get(incident_id).priority.value == "P0"
    clock.advance(10)
    engine.ingest([Alert(a.labels, status=AlertStatus.RESOLVED) for a in [lost, *nodes]])
    clock.advance(61)
    engine.tick()
    assert engine.store.get(incident_id).state is IncidentState.RESOLVED
    assert _kinds(outbox) == [ChangeKind.OPENED]
    # Restarted on the same store: the committed changes the outbox never stored are told now.
    engine, outbox = _serve(db, clock)
    engine.tick()
    kinds = _kinds(outbox)
    assert kinds[0] is ChangeKind.OPENED and kinds[-1] is ChangeKind.RESOLVED
    assert ChangeKind.PRIORITY_CHANGED in kinds
    assert [Notification.model_validate_json(m.payload).priority for m in outbox.messages()][-1] == "P0"
    engine.tick()
    assert len(_kinds(outbox)) == len(kinds)  # told once


def test_a_change_the_outbox_failed_to_store_is_told_again_at_the_next_tick(
    db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    engine, outbox = _serve(db, clock)
    lost = Alert({"alertname": "GPULost", "cluster": "c1", "Hostname": "r01-n01", "gpu": "0"})
    with monkeypatch.context() as patch:
        patch.setattr(outbox, "enqueue", _down)
        engine.ingest([lost])  # committed; the store drops before the outbox stores its announcement
    assert _kinds(outbox) == []
    engine.tick()  # the store is back
    assert _kinds(outbox) == [ChangeKind.OPENED]


def _cycles(db: str, clock: FakeClock, count: int, outbox_down: bool, patch: pytest.MonkeyPatch) -> Outbox:
    """A thermal alert 200 s firing, 200 s resolved, ``count`` times, on a served store (quiet period 300 s:
    it never resolves); the last cycle's changes committed while the outbox is unreachable (left untold),
    then a restart tells them."""
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(make_engine(db), clock, config, scenarios.fleet_inventory())
    outbox = Outbox(make_engine(db), [Quiet()], clock)
    engine.subscribe(outbox)
    hot = {"alertname": "GPUThermalSlowdown", "cluster": "c1", "Hostname": "r01-n01", "gpu": "0"}
    for k in range(count):
        if outbox_down and k == count - 1:
            patch.setattr(outbox, "enqueue", _down)
        for status in (AlertStatus.FIRING, AlertStatus.RESOLVED):
            engine.ingest([Alert(hot, status=status)])
            clock.advance(200)
            engine.tick()
    if outbox_down:
        engine = IncidentEngine(make_engine(db), clock, config, scenarios.fleet_inventory())
        outbox = Outbox(make_engine(db), [Quiet()], clock)
        engine.subscribe(outbox)
        engine.tick()
    return outbox


def test_a_repeat_of_a_cycle_told_after_a_restart_is_folded_as_a_running_serve_folds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whether a quiet or firing again only repeats the incident's cycle (Slack edits the message, no
    # reply) is decided by the transaction from the incident's timeline and stored with the change: a
    # process that starts after the commit knows nothing else of the cycle.
    told = []
    for name, down in (("straight", False), ("restarted", True)):
        db = str(tmp_path / f"{name}.db")
        upgrade(make_engine(db))
        outbox = _cycles(db, FakeClock(), 3, down, monkeypatch)
        notes = [Notification.model_validate_json(m.payload) for m in outbox.messages()]
        told.append([(n.event_kind, n.folded) for n in notes])
    assert told[0] == told[1]
    assert [folded is None for _, folded in told[0]] == [True, True, True, False, False, False]

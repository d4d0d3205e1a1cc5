"""An incident's life in the engine: repeats, resolving after the quiet period, reopening, flapping,
announcing after the delay, and actions on an incident it does not know."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerting import scenarios
from alerting.engine import IncidentEngine
from alerting.store import IncidentNotFound
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertStatus, IncidentState
from tests.alerting.incident_engines import _engine, _gpu_alert, _open


def test_repeated_posts_are_deduplicated_by_fingerprint(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock)
    alert = Alert({"alertname": "NodeDown", "cluster": "c1", "node": "x1"})
    for _ in range(5):
        engine.ingest([alert])
        clock.advance(10)
    (inc,) = _open(engine)
    assert inc[4] == 1
    row = engine.store.alert(alert.fingerprint)
    assert row is not None and row.receive_count == 5
    assert [e.kind for e in engine.store.get(inc[0]).timeline].count("alert_added") == 1


def test_lifecycle_auto_resolves_after_quiet_period_and_reopens_on_recurrence(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, quiet_period_seconds=300)
    changes: list[ChangeKind] = []
    engine.subscribe(lambda c: changes.append(c.kind))
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    engine.ingest([Alert(labels)])
    (inc,) = _open(engine)
    assert engine.acknowledge(inc[0], "alice").state is IncidentState.ACKNOWLEDGED
    assert engine.approve_remediation(inc[0], "bob").state is IncidentState.MITIGATING
    clock.advance(60)
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])
    clock.advance(299)
    engine.tick()
    assert engine.store.get(inc[0]).state is IncidentState.MITIGATING
    clock.advance(2)
    engine.tick()
    resolved = engine.store.get(inc[0])
    assert resolved.state is IncidentState.RESOLVED and resolved.resolved_at == clock.now()
    clock.advance(600)
    engine.ingest([Alert(labels)])
    reopened = engine.store.get(inc[0])
    assert reopened.state is IncidentState.TRIGGERED and reopened.resolved_at is None
    assert changes == [
        ChangeKind.OPENED,
        ChangeKind.ACKNOWLEDGED,
        ChangeKind.MITIGATING,
        ChangeKind.UPDATED,
        ChangeKind.RESOLVED,
        ChangeKind.REOPENED,
    ]


def test_a_recurrence_after_the_reopen_window_is_a_new_incident(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, quiet_period_seconds=300, reopen_window_seconds=3600)
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    began = clock.now()
    engine.ingest([Alert(labels)])
    [first] = engine.open_incident_ids()
    clock.advance(60)
    ended = clock.now()
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED, ends_at=ended)])
    clock.advance(301)
    engine.tick()
    postmortem = engine.postmortem(first)
    clock.advance(3601)
    engine.ingest([Alert(labels)])
    [second] = engine.open_incident_ids()
    assert second != first
    assert engine.store.get(first).state is IncidentState.RESOLVED
    fingerprint = Alert(labels).fingerprint
    assert engine.store.get(second).alert_fingerprints == [fingerprint]
    # The resolved incident's record stays as it was: its alert, as it saw it, and its postmortem.
    assert engine.store.get(first).alert_fingerprints == [fingerprint]
    assert {r.id: n for r, n in engine.store.list_rows()} == {first: 1, second: 1}  # listed as shown
    [(kept, status, starts, ends)] = [
        (a.fingerprint, a.status, a.starts_at, a.ends_at) for a in engine.store.alerts_of(first)
    ]
    assert (kept, status, starts, ends) == (fingerprint, "resolved", began, ended)
    again = engine.postmortem(first).splitlines()
    assert [line for line in again if line not in postmortem.splitlines()] == [
        f"- {clock.now():%Y-%m-%dT%H:%M:%S}Z — NodeDown (x1) fired again after the reopen window: a new"
        " incident takes it"
    ]  # the rest (evidence, MTTD, MTTR) as it was
    assert [a.starts_at for a in engine.store.alerts_of(second)] == [clock.now()]


def test_alert_whose_ends_at_passed_resolves_on_tick(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, quiet_period_seconds=0)
    alert = Alert({"alertname": "NodeDown", "node": "x1"}, ends_at=clock.now() + timedelta(seconds=60))
    engine.ingest([alert])
    clock.advance(61)
    engine.tick()
    engine.tick()
    row = engine.store.alert(alert.fingerprint)
    assert row is not None and row.status == "resolved"
    assert _open(engine) == []


THROTTLING = {"alertname": "GPUThermalThrottling", "Hostname": "x1", "gpu": "0"}


def _flap_then_resolve(engine: IncidentEngine, clock: FakeClock, cycles: int, step: float) -> dict[str, str]:
    """Fire, then ``cycles`` times resolve and fire again ``step`` seconds apart, then resolve."""
    engine.ingest([Alert(THROTTLING)])
    for _ in range(cycles):
        clock.advance(step)
        engine.ingest([Alert(THROTTLING, status=AlertStatus.RESOLVED)])
        clock.advance(step)
        engine.ingest([Alert(THROTTLING)])
    clock.advance(step)
    engine.ingest([Alert(THROTTLING, status=AlertStatus.RESOLVED)])
    return THROTTLING


def test_flapping_alert_keeps_its_incident_open_and_is_marked(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, quiet_period_seconds=30, flap_start_transitions=4, flap_stop_transitions=1)
    labels = _flap_then_resolve(engine, clock, cycles=3, step=20)
    clock.advance(60)
    engine.tick()
    (inc,) = _open(engine)
    kinds = [e.kind for e in engine.store.get(inc[0]).timeline]
    assert "flapping_started" in kinds
    row = engine.store.alert(Alert(labels).fingerprint)
    assert row is not None and row.flapping


def test_an_alert_that_stopped_flapping_and_stays_resolved_lets_its_incident_resolve(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, quiet_period_seconds=300, flap_window_seconds=600)
    labels = _flap_then_resolve(engine, clock, cycles=4, step=30)  # and it stays resolved
    (inc,) = _open(engine)
    for _ in range(40):  # 20 minutes of ticks: the flap window empties, then the quiet period passes
        clock.advance(30)
        engine.tick()
    incident = engine.store.get(inc[0])
    kinds = [e.kind for e in incident.timeline]
    assert incident.state is IncidentState.RESOLVED
    assert kinds.index("flapping_started") < kinds.index("flapping_stopped") < kinds.index("resolved")
    row = engine.store.alert(Alert(labels).fingerprint)
    assert row is not None and not row.flapping


def test_unknown_incident_actions_raise_not_found(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock)
    with pytest.raises(IncidentNotFound):
        engine.acknowledge("inc-missing", "x")


def test_new_incidents_are_announced_after_the_delay_and_merged_ones_never(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory(), announce_delay_seconds=10)
    seen: list[tuple[ChangeKind, str]] = []
    # A listener that told nobody of an incident passes on nothing of it marked only_if_told (its end).
    engine.subscribe(lambda c: c.only_if_told or seen.append((c.kind, c.incident.root_cause.kind.value)))
    engine.ingest([_gpu_alert("r07-n01", 0, "GPULost")])
    engine.ingest([_gpu_alert("r07-n02", 0, "GPULost")])
    for n in range(1, 9):  # the whole rack
        engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"r07-n0{n}"})])
    clock.advance(9)
    engine.tick()
    assert seen == []
    clock.advance(1)
    engine.tick()
    assert seen == [(ChangeKind.OPENED, "rack_down")]
    clock.advance(1)
    engine.ingest([_gpu_alert("r07-n05", 3, "GPULost")])
    assert seen[-1][0] is ChangeKind.UPDATED


def test_incident_resolved_before_its_announcement_is_never_announced(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, announce_delay_seconds=30, quiet_period_seconds=5)
    seen: list[ChangeKind] = []
    engine.subscribe(lambda c: c.only_if_told or seen.append(c.kind))
    labels = {"alertname": "NodeDown", "node": "x1"}
    engine.ingest([Alert(labels)])
    clock.advance(2)
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])
    clock.advance(6)
    engine.tick()
    clock.advance(60)
    engine.tick()
    assert seen == []

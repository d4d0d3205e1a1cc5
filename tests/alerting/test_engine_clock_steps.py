"""The wall clock set back (an NTP correction, a VM restored from a snapshot) while incidents are open: the
engine's stored times are then ahead of the clock, and no wait counted from them may last the step longer."""

from __future__ import annotations

from datetime import timedelta

from alerting.matchers import parse_matcher
from alerting.subscriptions import IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertStatus, IncidentState
from tests.alerting.incident_engines import _engine

LABELS = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}


class SettableClock(FakeClock):
    """A wall clock that an operator (or NTP) can set back."""

    def set_back(self, seconds: float) -> None:
        with self._lock:
            self._now -= seconds


def test_a_clock_set_back_does_not_hold_a_quiet_incident_open_for_the_step(db: str) -> None:
    clock = SettableClock()
    engine = _engine(db, clock, quiet_period_seconds=300)
    engine.ingest([Alert(LABELS)])
    [incident] = engine.open_incident_ids()
    clock.advance(60)
    engine.ingest([Alert(LABELS, status=AlertStatus.RESOLVED)])
    clock.advance(60)
    clock.set_back(3600)
    for _ in range(11):  # 5.5 minutes of ticks
        clock.advance(30)
        engine.tick()
    assert engine.store.get(incident).state is IncidentState.RESOLVED


def test_a_clock_set_back_does_not_keep_a_settled_flap_flapping_for_the_step(db: str) -> None:
    clock = SettableClock()
    engine = _engine(db, clock, quiet_period_seconds=300)
    for status in [AlertStatus.FIRING, AlertStatus.RESOLVED] * 3 + [AlertStatus.FIRING]:
        engine.ingest([Alert(LABELS, status=status)])
        clock.advance(20)
    row = engine.store.alert(Alert(LABELS).fingerprint)
    assert row is not None and row.flapping
    clock.set_back(3600)
    for _ in range(25):  # 12.5 minutes of ticks, past the 600 s flap window
        clock.advance(30)
        engine.ingest([Alert(LABELS)])
        engine.tick()
    row = engine.store.alert(Alert(LABELS).fingerprint)
    assert row is not None and not row.flapping


def test_a_clock_set_back_does_not_lift_an_incidents_silence_for_the_step(db: str) -> None:
    # Silenced at 00:00 for an hour, the clock set back ten minutes at 00:01: its silence, begun 00:00, read
    # as pending until then, and a node alert joining the incident was told unsilenced (paged).
    clock = SettableClock()
    engine = _engine(db, clock)
    engine.ingest([Alert(LABELS)])
    [incident] = engine.open_incident_ids()
    engine.silence_incident(incident, 3600, "alice")
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    clock.advance(60)
    clock.set_back(600)
    engine.ingest([Alert({**LABELS, "alertname": "GPUXid"})])
    engine.tick()
    assert told and all(change.silenced_until is not None for change in told)


def test_a_clock_set_back_does_not_bring_an_expired_silence_back(db: str) -> None:
    clock = SettableClock()
    engine = _engine(db, clock)
    now = clock.now()
    silence_id = engine.add_silence(
        [parse_matcher('alertname="NodeDown"')], now, now + timedelta(hours=1), "bob"
    )
    clock.advance(60)
    engine.expire_silence(silence_id)
    clock.set_back(600)
    engine.ingest([Alert(LABELS)])
    [incident] = engine.open_incident_ids()
    assert engine.store.get(incident).state is IncidentState.TRIGGERED
    assert [s.state(clock.now()) for s in engine.silences() if s.id == silence_id] in ([], ["expired"])

"""The wall clock set back (an NTP correction, a VM restored from a snapshot) while incidents are open: the
engine's stored times are then ahead of the clock, and no wait counted from them may last the step longer."""

from __future__ import annotations

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

"""Joining: where an alert that changed goes (its open incident, a reopened one, another, a new one)."""

from __future__ import annotations

from pathlib import Path

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.notifiers.base import build_notification
from alerting.notifiers.blocks import incident_message
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, IncidentState

HOT = {"alertname": "GpuTemperatureHigh", "cluster": "c8", "node": "ff-n1", "gpu": "2"}


def _engine(tmp_path: Path, clock: FakeClock) -> IncidentEngine:
    path = str(tmp_path / "incidents.db")
    upgrade(make_engine(path))
    config = AlertingConfig(
        announce_delay_seconds=0, quiet_period_seconds=3, flap_window_seconds=120, flap_start_transitions=6
    )
    return IncidentEngine(make_engine(path), clock, config)


def test_the_flap_that_crosses_the_threshold_of_a_resolved_incident_is_held_not_paged(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    engine.ingest([Alert(HOT)])
    [incident_id] = engine.open_incident_ids()
    reopens = []
    for _ in range(3):  # transitions R1 F2, R3 F4, R5 F6: the sixth crosses the threshold
        clock.advance(8)
        engine.ingest([Alert(HOT, status=AlertStatus.RESOLVED)])
        for _ in range(8):  # ticks through the quiet period: the incident resolves each time
            clock.advance(1)
            engine.tick()
        assert engine.store.get(incident_id).state is IncidentState.RESOLVED
        before = len(told)
        engine.ingest([Alert(HOT)])
        reopens.append([c.kind for c in told[before:]].count(ChangeKind.REOPENED))
    assert reopens == [1, 1, 0]  # F2 and F4 page a reopening; F6, that makes it flapping, does not
    incident = engine.store.get(incident_id)
    assert incident.state is not IncidentState.RESOLVED  # held open while it flaps
    assert "alert GpuTemperatureHigh started flapping" in [e.message for e in incident.timeline]
    shown = str(incident_message(build_notification(told[-1])).attachments)
    assert "flapping" in shown and "GpuTemperatureHigh" in shown

"""The wall clock set back (an NTP correction, a VM restored from a snapshot) while incidents are open: the
engine's stored times are then ahead of the clock, and no wait counted from them may last the step longer."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerting.engine import IncidentEngine
from alerting.matchers import parse_matcher
from alerting.subscriptions import IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertStatus, IncidentState, Priority
from tests.alerting.incident_engines import _engine
from tests.alerting.test_reassessment import busy_cluster

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


def _reminders(engine: IncidentEngine, incident: str) -> list[str]:
    return [e.message for e in engine.store.get(incident).timeline if e.kind == "reminder"]


@pytest.mark.parametrize("step", [3600, 1800, 7200], ids=["1h", "30min", "2h"])
def test_a_clock_set_back_does_not_put_off_a_reminder_for_the_step(db: str, step: int) -> None:
    # Paged at 00:00, the clock set back at 00:01: the reminder came when the clock read 01:00 again (the
    # step later), as the tick read the page's age as negative until then.
    clock = SettableClock()
    engine = _engine(db, clock, remind_after_seconds=3600)
    engine.ingest([Alert(LABELS)])
    [incident] = engine.open_incident_ids()
    engine.tick()
    clock.advance(60)
    engine.tick()
    clock.set_back(step)
    minutes = 0
    while not _reminders(engine, incident) and minutes < 3 * 60:
        clock.advance(60)
        engine.ingest([Alert(LABELS)])
        engine.tick()
        minutes += 1
    assert 59 <= minutes <= 62, minutes
    for _ in range(58):  # one reminder per page: the next an hour after it
        clock.advance(60)
        engine.ingest([Alert(LABELS)])
        engine.tick()
    assert len(_reminders(engine, incident)) == 1
    for _ in range(3):
        clock.advance(60)
        engine.ingest([Alert(LABELS)])
        engine.tick()
    assert len(_reminders(engine, incident)) == 2


def _resolved_at_00_06(db: str, clock: SettableClock) -> tuple[IncidentEngine, str]:
    """An engine (quiet period 5 minutes, reopen window 10) whose one incident fired at 00:00 and resolved at
    00:06, and that incident."""
    engine = _engine(db, clock, quiet_period_seconds=300, reopen_window_seconds=600)
    engine.ingest([Alert(LABELS)])
    [incident] = engine.open_incident_ids()
    clock.advance(30)
    engine.ingest([Alert(LABELS, status=AlertStatus.RESOLVED)])
    for _ in range(11):
        clock.advance(30)
        engine.tick()
    return engine, incident


@pytest.mark.parametrize("restarted", [False, True], ids=["running", "serve-started-after-the-step"])
def test_a_clock_set_back_after_a_resolution_does_not_stretch_the_reopen_window(
    db: str, restarted: bool
) -> None:
    # Resolved at 00:06, the clock set back an hour at 00:07: the alert firing again 20 minutes later, past
    # the 10-minute reopen window, reopened the incident, as it resolved "after" the time now. A serve started
    # after the step reads that resolution from the store.
    clock = SettableClock()
    engine, incident = _resolved_at_00_06(db, clock)
    assert engine.store.get(incident).state is IncidentState.RESOLVED
    clock.set_back(3600)
    if restarted:
        engine = _engine(db, clock, quiet_period_seconds=300, reopen_window_seconds=600)
    for _ in range(40):
        clock.advance(30)
        engine.tick()
    engine.ingest([Alert(LABELS)])
    assert engine.store.get(incident).state is IncidentState.RESOLVED
    assert engine.open_incident_ids() != [incident]


def test_a_recurrence_soon_after_the_clock_is_set_back_still_reopens_its_incident(db: str) -> None:
    clock = SettableClock()
    engine, incident = _resolved_at_00_06(db, clock)
    clock.set_back(3600)
    for _ in range(16):  # 8 minutes
        clock.advance(30)
        engine.tick()
    engine.ingest([Alert({**LABELS, "alertname": "GPULost", "gpu": "0"})])  # the same node's outage
    engine.ingest([Alert(LABELS)])
    assert engine.open_incident_ids() == [incident]


def test_a_clock_set_back_within_the_announce_delay_does_not_hold_the_page_for_the_step(db: str) -> None:
    # Opened at 00:00 with a 60 s announce delay, the clock set back an hour at 00:00:10: nobody was paged
    # until the clock read 00:01 again, an hour later.
    clock = SettableClock()
    engine = _engine(db, clock, announce_delay_seconds=60)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    engine.ingest([Alert(LABELS)])
    clock.advance(10)
    engine.tick()
    clock.set_back(3600)
    seconds = 0
    while not told and seconds < 600:
        clock.advance(10)
        engine.tick()
        seconds += 10
    assert 60 <= seconds <= 70


def test_a_clock_set_back_does_not_hold_a_lower_priority_back_for_the_step(db: str) -> None:
    # Spare capacity came at 00:01 (P0 to P1 once it holds 300 s), the clock set back an hour at 00:02: the
    # incident stayed P0 until the clock read 00:06 again, an hour later.
    clock = SettableClock()
    engine = _engine(db, clock, busy_cluster(0))
    xid = {"alertname": "GpuXidError", "cluster": "c1", "node": "n1", "gpu": "0", "xid": "79"}
    engine.ingest([Alert(xid)])
    [incident] = engine.open_incident_ids()
    assert engine.store.get(incident).priority is Priority.P0
    clock.advance(60)
    engine.replace_inventory(busy_cluster(8))  # spare now: lowering waits 300 s
    clock.advance(60)
    engine.replace_inventory(busy_cluster(8))
    clock.set_back(3600)
    for _ in range(5):
        clock.advance(60)
        engine.replace_inventory(busy_cluster(8))
    assert engine.store.get(incident).priority is Priority.P0  # held 300 s only counting from the step
    clock.advance(60)
    engine.replace_inventory(busy_cluster(8))
    assert engine.store.get(incident).priority is Priority.P1

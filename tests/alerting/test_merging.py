"""Merging: an incident that takes in another takes in what people did on it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from alerting.engine import IncidentEngine
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, IncidentState

DAY = datetime(2026, 3, 2, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(DAY.replace(hour=16, minute=47, second=19).timestamp())


def _fire(engine: IncidentEngine, clock: FakeClock, starts: str, posted: str, labels: dict[str, str]) -> None:
    """Post one firing alert at ``posted`` (that time of the day), started at ``starts``."""
    h, m, sec = (int(x) for x in posted.split(":"))
    clock.advance((DAY.replace(hour=h, minute=m, second=sec) - clock.now()).total_seconds())
    h, m, sec = (int(x) for x in starts.split(":"))
    began = DAY.replace(hour=h, minute=m, second=sec)
    engine.ingest([Alert(labels, starts_at=began, ends_at=clock.now() + timedelta(minutes=5))])


def _merged_after_bea_took_it_up(engine: IncidentEngine, clock: FakeClock, took_up: str) -> tuple[str, str]:
    """A hot GPU's incident (16:47:19) and an XID's (16:47:21) that bea acknowledged, or marked mitigating, at
    16:47:28; the node going down at 16:47:31 merges the XID's into the hot GPU's. (survivor, absorbed)."""
    _fire(
        engine, clock, "16:47:19", "16:47:20", {"alertname": "GpuTemperatureHigh", "node": "n10", "gpu": "0"}
    )
    [survivor] = engine.open_incident_ids()
    _fire(engine, clock, "16:47:21", "16:47:21", {"alertname": "GpuXidError", "node": "n10", "gpu": "1"})
    [absorbed] = set(engine.open_incident_ids()) - {survivor}
    clock.advance(7)  # 16:47:28
    if took_up == "ack":
        engine.acknowledge(absorbed, "bea")
    else:
        engine.mark_mitigating(absorbed, "bea", "reset gpu 1")
    _fire(engine, clock, "16:47:30", "16:47:31", {"alertname": "NodeDown", "node": "n10"})
    return survivor, absorbed


@pytest.mark.parametrize("took_up", ["ack", "mitigate"])
def test_an_incident_taking_in_one_someone_acknowledged_is_acknowledged_by_them(
    sql: Engine, clock: FakeClock, took_up: str
) -> None:
    # bea acknowledged the XID's incident; the node then went down and the hot GPU's incident, opened first,
    # took it in. It stayed "triggered", its Slack message offering Acknowledge again.
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0))
    heard: list[tuple[str, ChangeKind]] = []
    engine.subscribe(lambda c: heard.append((c.incident.id, c.kind)))
    survivor, absorbed = _merged_after_bea_took_it_up(engine, clock, took_up)
    incident = engine.store.get(survivor)
    assert incident.state is IncidentState.ACKNOWLEDGED
    assert (survivor, ChangeKind.ACKNOWLEDGED) in heard
    said = [(e.kind, e.message) for e in incident.timeline if e.kind in ("merged", "acknowledged")]
    assert said[1] == ("acknowledged", f"acknowledged by bea on {absorbed}, merged in since")
    assert engine.acknowledge_outcome(survivor, "carl").already.startswith("already acknowledged by bea")
    actions = engine.postmortem(survivor).split("## Actions\n\n", 1)[1].split("\n\n", 1)[0]
    what = "acknowledged by bea" if took_up == "ack" else "mitigating: reset gpu 1 (by bea)"
    assert actions == f"- 2026-03-02T16:47:28Z — {what} (on {absorbed}, merged in since)"


@pytest.mark.parametrize("took_up", ["ack", "mitigate"])
def test_a_repeated_ack_after_a_merge_names_when_the_person_took_it_up_not_the_merge(
    sql: Engine, clock: FakeClock, took_up: str
) -> None:
    # bea took up the XID's incident at 16:47:28; the merge at 16:47:31 carried her ack over. A second ack
    # said "already acknowledged by bea at 16:47:31Z", a time she did nothing.
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0))
    survivor, absorbed = _merged_after_bea_took_it_up(engine, clock, took_up)
    assert engine.acknowledge_outcome(survivor, "carl").already == (
        f"already acknowledged by bea at 2026-03-02T16:47:28Z (on {absorbed}, merged in since)"
    )

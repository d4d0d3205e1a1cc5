"""The postmortem's time to acknowledge: each page of an incident, its opening and each reopening that
paged, needs its own ack."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from alerting.engine import IncidentEngine
from alerting.postmortem import render_postmortem
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import (
    Alert,
    AlertStatus,
    FaultKind,
    Incident,
    IncidentState,
    NodeRef,
    Priority,
    RootCause,
    TimelineEvent,
)

ECC = {"alertname": "GpuEccDbe", "node": "n04", "gpu": "3"}
DAY = datetime(2026, 3, 2, tzinfo=UTC)


def _t(hhmmss: str) -> datetime:
    h, m, sec = (int(x) for x in hhmmss.split(":"))
    return DAY.replace(hour=h, minute=m, second=sec)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(_t("16:47:19").timestamp())


def _at(clock: FakeClock, hhmmss: str) -> None:
    clock.advance((_t(hhmmss) - clock.now()).total_seconds())


def _cycle(engine: IncidentEngine, clock: FakeClock, fires: str, ends: str) -> None:
    """The alert fires at ``fires`` and resolves at ``ends``; the incident resolves 20 s later."""
    _at(clock, fires)
    engine.ingest([Alert(ECC, starts_at=_t(fires), ends_at=clock.now() + timedelta(minutes=5))])
    _at(clock, ends)
    engine.ingest([Alert(ECC, status=AlertStatus.RESOLVED, ends_at=_t(ends))])
    clock.advance(21)
    engine.tick()


def _metrics(md: str) -> dict[str, str]:
    section = md.split("## Metrics\n\n", 1)[1].split("\n\n", 1)[0]
    return dict(line.removeprefix("- ").split(": ", 1) for line in section.splitlines())


def test_a_reopening_that_paged_has_its_own_time_to_acknowledge(sql: Engine, clock: FakeClock) -> None:
    # alice acknowledged the opening; the fault came back and paged again, and nobody acknowledged that. The
    # draft said "Time to acknowledge: 0m 07s", from the first opening, as if the reopening's page was taken.
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=20, announce_delay_seconds=0))
    _at(clock, "16:47:19")
    engine.ingest([Alert(ECC, starts_at=_t("16:47:19"), ends_at=clock.now() + timedelta(minutes=5))])
    [incident_id] = engine.open_incident_ids()
    _at(clock, "16:47:26")
    engine.acknowledge(incident_id, "alice")
    _at(clock, "16:47:30")
    engine.ingest([Alert(ECC, status=AlertStatus.RESOLVED, ends_at=_t("16:47:30"))])
    clock.advance(21)
    engine.tick()
    _cycle(engine, clock, "16:50:00", "16:50:30")  # reopened: a page, not acknowledged
    _cycle(engine, clock, "16:53:00", "16:53:30")  # reopened again by it: cycling, held, no page
    metrics = _metrics(engine.postmortem(incident_id))
    assert metrics["Time to acknowledge"] == "0m 07s"
    assert metrics["Time to acknowledge, reopened 2026-03-02T16:50:00Z"] == "not acknowledged"
    assert not any("16:53:00" in key for key in metrics)  # it paged nobody: nothing to acknowledge


def test_an_ack_after_a_reopening_counts_for_it_not_for_the_opening(sql: Engine, clock: FakeClock) -> None:
    engine = IncidentEngine(sql, clock, AlertingConfig(quiet_period_seconds=20, announce_delay_seconds=0))
    _cycle(engine, clock, "16:47:19", "16:47:30")
    [incident_id] = [row.id for row, _ in engine.store.list_rows()]
    _at(clock, "16:50:00")
    engine.ingest([Alert(ECC, starts_at=_t("16:50:00"), ends_at=clock.now() + timedelta(minutes=5))])
    _at(clock, "16:50:05")
    engine.acknowledge(incident_id, "bob")
    metrics = _metrics(engine.postmortem(incident_id))
    assert metrics["Time to acknowledge"] == "not acknowledged"
    assert metrics["Time to acknowledge, reopened 2026-03-02T16:50:00Z"] == "0m 05s"


def test_an_ack_a_merge_carried_over_takes_up_the_reopening_it_came_in() -> None:
    # bea acknowledged inc-2 before this incident reopened; inc-2 merged into it after, carrying her ack over:
    # the reopening was taken up at the merge, and her ack is listed once, as the one on inc-2.
    opened, reopened = _t("16:47:19"), _t("16:50:00")
    incident = Incident(
        id="inc-1",
        title="node n10 is down",
        priority=Priority.P2,
        state=IncidentState.ACKNOWLEDGED,
        root_cause=RootCause(FaultKind.NODE_DOWN, NodeRef("n10")),
        opened_at=opened,
        timeline=[
            TimelineEvent(opened, "opened", "incident opened"),
            TimelineEvent(_t("16:47:49"), "resolved", "resolved: all alerts quiet for the quiet period"),
            TimelineEvent(reopened, "reopened", "reopened: NodeDown (n10) fired again"),
            TimelineEvent(
                _t("16:50:09"),
                "acknowledged",
                "acknowledged by bea on inc-2, merged in since",
                {"by": "bea", "carried_from": "inc-2"},
            ),
        ],
    )
    absorbed = [
        TimelineEvent(
            _t("16:49:00"), "acknowledged", "acknowledged by bea", {"by": "bea", "incident": "inc-2"}
        )
    ]
    md = render_postmortem(incident, opened, ["NodeDown"], None, absorbed=absorbed)
    assert _metrics(md)["Time to acknowledge, reopened 2026-03-02T16:50:00Z"] == "0m 09s"
    actions = md.split("## Actions\n\n", 1)[1].split("\n\n", 1)[0]
    assert actions == "- 2026-03-02T16:49:00Z — acknowledged by bea (on inc-2, merged in since)"

"""An alert posted again merges its activity range with the stored one as Alertmanager's does: the earliest
``startsAt`` of overlapping posts, and of two firing (or two resolved) posts the later ``endsAt``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.spans import earlier_start, merged_ends
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
NODE_DOWN = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("stored", "ends", "merged"),
    [
        ((0, 600), 300, 600),
        ((0, 600), 900, 900),
        ((100, 600), 50, 50),  # ends before the stored start: no overlap, the new one
        ((0, None), 300, 300),
        ((0, 600), None, None),
    ],
    ids=["earlier-end-in-range-keeps-stored", "later-end", "no-overlap", "stored-open", "new-open"],
)
def test_merged_ends_keeps_the_later_end_of_an_overlap(
    stored: tuple[float, float | None], ends: float | None, merged: float | None
) -> None:
    starts, stored_ends = stored
    got = merged_ends(
        _at(starts), None if stored_ends is None else _at(stored_ends), None if ends is None else _at(ends)
    )
    assert got == (None if merged is None else _at(merged))


@pytest.mark.parametrize(
    ("starts", "ends", "earlier"),
    [(-30, 300, -30), (30, 300, None), (None, 300, None), (-30, -10, None), (-30, None, -30)],
    ids=["earlier-overlapping", "later", "none", "ends-before-stored-start", "open-end"],
)
def test_earlier_start_moves_only_to_an_earlier_overlapping_start(
    starts: float | None, ends: float | None, earlier: float | None
) -> None:
    got = earlier_start(T0, None if starts is None else _at(starts), None if ends is None else _at(ends))
    assert got == (None if earlier is None else _at(earlier))


@pytest.fixture
def engine(tmp_path: Path) -> IncidentEngine:
    db = str(tmp_path / "incidents.db")
    upgrade(make_engine(db))
    clock = FakeClock(T0.timestamp())
    return IncidentEngine(
        make_engine(db), clock, AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=0)
    )


def _post(engine: IncidentEngine, starts: float, ends: float) -> None:
    engine.ingest([Alert(NODE_DOWN, starts_at=_at(starts), ends_at=_at(ends))])


def test_an_ha_pair_keeps_the_earliest_start_and_the_later_end(engine: IncidentEngine) -> None:
    """Replica B saw the rule fire 15 s after replica A and posts first; A's post, evaluated earlier, ends
    earlier: the alert starts at A's start and ends at B's end, as in Alertmanager."""
    _post(engine, -30, 240)  # replica B
    _post(engine, -45, 180)  # replica A
    _post(engine, -30, 240)  # B again: a repeat
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and (row.starts_at, row.ends_at) == (_at(-45), _at(240))
    assert isinstance(engine.clock, FakeClock)
    engine.clock.advance(200)  # past A's endsAt: still firing
    engine.tick()
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and row.status == AlertStatus.FIRING.value
    ((incident, _),) = engine.store.list_rows()
    assert f"First onset: {_at(-45):%Y-%m-%d %H:%M:%S} UTC" in engine.postmortem(incident.id)


def test_a_repeat_with_an_earlier_end_keeps_the_later_one(engine: IncidentEngine) -> None:
    """The same startsAt, nothing else changed (the fast path): the earlier endsAt does not end it early."""
    _post(engine, -30, 600)
    _post(engine, -30, 120)
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and row.ends_at == _at(600)


def test_a_resolution_ends_the_alert_though_the_stored_end_is_later(engine: IncidentEngine) -> None:
    _post(engine, -30, 600)
    _post(engine, -45, 0)  # resolved now, by the replica that saw it start first
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and row.status == AlertStatus.RESOLVED.value
    assert (row.starts_at, row.ends_at) == (_at(-45), _at(0))

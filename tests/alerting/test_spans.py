"""An alert posted again merges its activity range with the stored one as Alertmanager's does: the earliest
``startsAt`` of overlapping posts, and of two firing (or two resolved) posts the later ``endsAt``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.ingest import parse_postable_alerts
from alerting.matchers import parse_matcher
from alerting.migrate import upgrade
from alerting.spans import earlier_start, merged_ends
from gpuwarden.clock import FakeClock, rfc3339
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
    assert f"First onset: {_at(-45):%Y-%m-%dT%H:%M:%S}Z" in engine.postmortem(incident.id)


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


def _posted(engine: IncidentEngine, body: list[dict[str, object]]) -> None:
    """Alerts as ``POST /api/v2/alerts`` reads them: one without endsAt ends the resolve timeout after now."""
    timeout = timedelta(seconds=engine.config.resolve_timeout_seconds)
    engine.ingest(parse_postable_alerts(body, engine.clock.now(), timeout))


@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "after-restart"])
def test_an_explicit_end_earlier_than_the_resolve_timeout_stands(
    engine: IncidentEngine, tmp_path: Path, restart: bool
) -> None:
    """Posted first without endsAt (it ends the resolve timeout, 300 s, after receipt), then with its own
    endsAt 60 s ahead: the alert ends then, as in Alertmanager (``Timeout``), not 300 s ahead."""
    _posted(engine, [{"labels": NODE_DOWN}])
    if restart:
        engine = _restarted(engine, tmp_path)
    _posted(engine, [{"labels": NODE_DOWN, "endsAt": rfc3339(_at(60))}])
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and row.ends_at == _at(60)
    _posted(engine, [{"labels": NODE_DOWN, "endsAt": rfc3339(_at(30))}])  # explicit, earlier: the later stays
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and row.ends_at == _at(60)


def _restarted(engine: IncidentEngine, tmp_path: Path) -> IncidentEngine:
    """A new engine on the same store, as the next ``serve`` starts."""
    return IncidentEngine(make_engine(str(tmp_path / "incidents.db")), engine.clock, engine.config)


@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "after-restart"])
def test_an_open_ended_repost_keeps_a_later_explicit_end_then_yields_to_the_next(
    engine: IncidentEngine, tmp_path: Path, restart: bool
) -> None:
    """Alertmanager keeps a later explicit endsAt over a timeout posted next, but the merged alert is a
    timeout (the newer post's mark): an explicit endsAt after that stands though it is earlier, after a
    restart too (the stored end is no resolve timeout after the last post: the mark must be stored)."""
    _posted(engine, [{"labels": NODE_DOWN, "endsAt": rfc3339(_at(900))}])
    _posted(engine, [{"labels": NODE_DOWN}])
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and row.ends_at == _at(900)
    if restart:
        engine = _restarted(engine, tmp_path)
    _posted(engine, [{"labels": NODE_DOWN, "endsAt": rfc3339(_at(120))}])
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and row.ends_at == _at(120)


@pytest.mark.parametrize("annotations", [{}, {"summary": "new"}], ids=["repeat", "annotations-changed"])
def test_a_repost_takes_the_newer_generator_url(engine: IncidentEngine, annotations: dict[str, str]) -> None:
    """As Alertmanager's merge takes the newer post's attributes: GET /api/v2/alerts shows the rule link the
    alert was last posted with (the fast path of a repeat, and the slow one)."""
    first = "http://prom-0:9090/graph?g0.expr=up"
    _posted(engine, [{"labels": NODE_DOWN, "endsAt": rfc3339(_at(600)), "generatorURL": first}])
    second = "http://prom-1:9090/graph?g0.expr=up"
    body = {"labels": NODE_DOWN, "endsAt": rfc3339(_at(600)), "generatorURL": second}
    _posted(engine, [{**body, "annotations": annotations}])
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and row.generator_url == second


def test_an_alert_released_by_a_silence_keeps_its_resolve_timeout_mark(engine: IncidentEngine) -> None:
    """A silence held the open-ended alert back; when it ends, the engine sends the stored alert through
    ingest again, which must not make its resolve timeout an explicit end that outlasts the sender's own."""
    engine.add_silence([parse_matcher('node="x1"')], _at(0), _at(60), "bob")
    _posted(engine, [{"labels": NODE_DOWN}])
    assert isinstance(engine.clock, FakeClock)
    engine.clock.advance(61)
    engine.tick()  # the silence ended: the alert is released
    assert engine.open_incident_ids()
    _posted(engine, [{"labels": NODE_DOWN, "endsAt": rfc3339(_at(200))}])
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and row.ends_at == _at(200)


def test_an_explicit_end_stands_over_a_timeout_repeated_in_a_journal_batch_after_a_restart(
    engine: IncidentEngine, tmp_path: Path
) -> None:
    """The journal applies records accepted at different times in one transaction: a repeat without endsAt
    accepted 10 s before another record of the batch ends 300 s after its own accept (its last seen is the
    batch's time), and stays a resolve timeout once the engine restarts."""
    assert isinstance(engine.clock, FakeClock)
    timeout = timedelta(seconds=engine.config.resolve_timeout_seconds)
    _posted(engine, [{"labels": NODE_DOWN}])
    accepted = [
        (_at(10), [{"labels": NODE_DOWN}]),
        (_at(20), [{"labels": {"alertname": "Other", "node": "x2"}}]),
    ]
    engine.clock.advance(20)
    engine.apply_accepted(
        [(at, parse_postable_alerts(body, at, timeout)) for at, body in accepted], lambda _session: None
    )
    engine = _restarted(engine, tmp_path)
    _posted(engine, [{"labels": NODE_DOWN, "endsAt": rfc3339(_at(120))}])
    row = engine.store.alert(Alert(NODE_DOWN).fingerprint)
    assert row is not None and row.ends_at == _at(120)

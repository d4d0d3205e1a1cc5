from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerting.matchers import parse_matcher
from alerting.silences import Silence, muting_silence

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _silence(**kw: object) -> Silence:
    args: dict[str, object] = {
        "id": "s1",
        "matchers": (parse_matcher('node="n1"'),),
        "starts_at": T0,
        "ends_at": T0 + timedelta(hours=1),
        "created_by": "me",
    }
    args.update(kw)
    return Silence(**args)  # type: ignore[arg-type]


def test_silence_mutes_only_inside_its_time_range() -> None:
    s = _silence()
    labels = {"node": "n1"}
    assert s.state(T0 - timedelta(seconds=1)) == "pending"
    assert not s.mutes(labels, T0 - timedelta(seconds=1))
    assert s.mutes(labels, T0 + timedelta(minutes=5))
    assert s.state(T0 + timedelta(hours=1)) == "expired"
    assert not s.mutes(labels, T0 + timedelta(hours=1))


def test_silence_needs_every_matcher() -> None:
    s = _silence(matchers=(parse_matcher('node="n1"'), parse_matcher('alertname=~"GPU.*"')))
    assert muting_silence([s], {"node": "n1", "alertname": "GPULost"}, T0) is s
    assert muting_silence([s], {"node": "n1", "alertname": "NodeDown"}, T0) is None


def test_incident_silence_mutes_members_of_that_incident_only() -> None:
    s = _silence(matchers=(), incident_id="inc-1")
    assert s.mutes({"x": "y"}, T0, "inc-1")
    assert not s.mutes({"x": "y"}, T0, "inc-2")
    assert not s.mutes({"x": "y"}, T0, None)

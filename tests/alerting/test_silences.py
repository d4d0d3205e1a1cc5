from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from alerting.matchers import parse_matcher
from alerting.silences import Silence, muting_silence, parse_duration
from gpuwarden.errors import InputError

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


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90m", 5400.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1w", 604800.0),
        ("45s", 45.0),
        ("500ms", 0.5),
        ("1d12h", 129600.0),
        ("1m5s250ms", 65.25),
        ("1y", 31536000.0),  # amtool's and Prometheus' year: 365 days, the longest silence taken
    ],
)
def test_durations_are_read_as_amtool_writes_them(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text",
    ["", "1.5h", "h", "0s", "-1h", "1h 30m", "2y", "1y1d1d", "60", "100000000w", "1h1h", "30m1h", "\u0663h",
     " 1h", "9" * 5000 + "s"],
    ids=lambda text: text if len(text) < 20 else "5000-digits",
)  # fmt: skip
def test_a_duration_that_is_not_one_is_refused_naming_the_field(text: str) -> None:
    with pytest.raises(InputError) as err:
        parse_duration(text)
    assert err.value.field == "duration"

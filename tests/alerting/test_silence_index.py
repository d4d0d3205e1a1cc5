from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import pytest

from alerting.matchers import Matcher, parse_matcher
from alerting.silence_index import SilenceIndex
from alerting.silences import Silence, SilenceKind

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _silence(sid: str, *matchers: str, kind: SilenceKind = SilenceKind.SILENCE, **kw: object) -> Silence:
    start, end = kw.pop("starts_at", T0), kw.pop("ends_at", T0 + timedelta(hours=1))
    return Silence(
        sid,
        tuple(parse_matcher(m) for m in matchers),
        start,  # type: ignore[arg-type]
        end,  # type: ignore[arg-type]
        "ops",
        kind=kind,
        incident_id=kw.pop("incident_id", None),  # type: ignore[arg-type]
    )


SILENCES = [
    _silence("eq", 'node="n1"'),
    _silence("eq-empty", 'rack=""', 'alertname="NodeDown"'),
    _silence("regex", 'alertname=~"Gpu.*"', 'node=~"n[12]"'),
    _silence("regex-on-instance", 'instance=~"host-1.*"'),
    _silence("regex-matching-empty", 'team=~"a|"'),
    _silence("not-equal", 'alertname!="NodeDown"'),
    _silence("negative-regex", 'alertname!~"Gpu.*"', 'node="n3"'),
    _silence("expired", 'node="n1"', ends_at=T0 - timedelta(minutes=1)),
    _silence("pending", 'node="n1"', starts_at=T0 + timedelta(minutes=1)),
    _silence("window", 'rack="r1"', kind=SilenceKind.MAINTENANCE),
    _silence("incident", incident_id="inc-1"),
    _silence("no-matchers"),
]
ALERTS = [
    {"alertname": "NodeDown", "node": "n1"},
    {"alertname": "NodeDown", "node": "n3", "rack": ""},
    {"alertname": "GpuXid", "node": "n2"},
    {"alertname": "GpuXid", "node": "n3"},
    {"alertname": "QueueBacklog", "instance": "host-12:9100"},
    {"alertname": "QueueBacklog", "team": "b"},
    {"alertname": "Other"},
    {},
]


@pytest.mark.parametrize("labels", ALERTS, ids=[str(i) for i in range(len(ALERTS))])
@pytest.mark.parametrize("incident_id", [None, "inc-1", "inc-2"])
def test_the_index_finds_exactly_the_silences_that_checking_each_one_finds(
    labels: dict[str, str], incident_id: str | None
) -> None:
    def placed() -> dict[str, str]:
        return {"rack": "r1", **labels}  # the inventory puts every node in rack r1

    index = SilenceIndex(SILENCES)
    expected = [s.id for s in SILENCES if s.mutes(labels, T0, incident_id, placed)]
    assert [s.id for s in index.muting(labels, T0, incident_id, placed)] == expected
    assert [s.id for s in index.muting(labels, T0, incident_id, placed)] == expected  # remembered answers


def test_a_regular_expression_silence_runs_once_per_distinct_value_of_its_label(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    silences = [
        _silence(f"s{i}", f'alertname=~"Team{i}Alert|Other{i}.*"', f'instance=~"host-{i}.*"')
        for i in range(50)
    ]
    silences.append(_silence("hit", 'alertname=~"Queue.*"', 'queue=~"q1.*"'))
    index = SilenceIndex(silences)
    calls = 0
    matches = Matcher.matches

    def counting(self: Matcher, labels: Mapping[str, str]) -> bool:
        nonlocal calls
        calls += 1
        return matches(self, labels)

    monkeypatch.setattr(Matcher, "matches", counting)
    muted = [i for i in range(200) if index.muting({"alertname": "QueueBacklog", "queue": f"q{i}"}, T0)]
    assert muted == [1, *range(10, 20), *range(100, 200)]
    # once per silence on the one alertname, then the one candidate's two matchers per alert: not 200 x 51
    assert calls == len(silences) + 2 * 200

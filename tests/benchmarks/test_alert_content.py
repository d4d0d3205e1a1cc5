"""``benchmarks/alert_content.py``: which alerts the restart fuzz takes for saying the same."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import ModuleType

import pytest

from gpuwarden.model import Alert, EvidencePoint, RecommendedAction
from tests.benchmarks.harness import harness_module

LABELS = {"alertname": "GpuAnomaly", "Hostname": "n1", "gpu": "1"}


@pytest.fixture
def content(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    return harness_module(monkeypatch, "alert_content")


def _content(content: ModuleType, labels: dict[str, str]) -> object:
    alert = Alert(labels, score=3.0, recommended_action=RecommendedAction.INVESTIGATE)
    return content.alert_content(alert)


def test_alerts_with_the_same_labels_in_another_order_say_the_same(content: ModuleType) -> None:
    """The labels are compared as a set of pairs: a restarted service that builds them in another order
    says the same."""
    reordered = dict(reversed(LABELS.items()))
    assert content.same_content(_content(content, LABELS), _content(content, reordered))


@pytest.mark.parametrize(
    "labels",
    [
        pytest.param({**LABELS, "severity": "critical"}, id="a-label-more"),
        pytest.param({**LABELS, "gpu": "2"}, id="another-value"),
        pytest.param({k: v for k, v in LABELS.items() if k != "Hostname"}, id="a-label-less"),
    ],
)
def test_alerts_whose_labels_differ_do_not_say_the_same(content: ModuleType, labels: dict[str, str]) -> None:
    """Same action, same score: only the labels tell them apart; a comparison that skipped them would take
    a restart that labelled an alert otherwise for one that agreed."""
    assert not content.same_content(_content(content, LABELS), _content(content, labels))
    assert not content.same_content(_content(content, labels), _content(content, LABELS))


STALE = {"alertname": "GpuwardenSourceStale", "source": "prometheus", "query": "temp"}
LAST_GOOD = datetime(2026, 1, 1, tzinfo=UTC)


def _stale(content: ModuleType, raised_after: float, age: float) -> object:
    """A staleness alert raised ``raised_after`` seconds after ``LAST_GOOD`` with ``age`` (its evidence's one
    point) and the score ``age`` / 120 s, capped as exported."""
    at = LAST_GOOD + timedelta(seconds=raised_after)
    alert = Alert(
        STALE,
        starts_at=at,
        score=min(10.0, age / 120.0),
        evidence=(EvidencePoint(at=at, value=age),),
        recommended_action=RecommendedAction.INVESTIGATE,
    )
    return content.alert_content(alert)


def test_staleness_alerts_raised_later_of_the_same_failure_say_the_same(content: ModuleType) -> None:
    """A restarted process that first read the failure a tick later raised it at 598 / 120 where the
    uninterrupted run raised 300 / 120: both tell of a failure since the same last good read (their score is
    the age when raised); the fuzz took it for a divergence (12 of 20 seeds, failures 2 ticks longer)."""
    straight = _stale(content, 300.0, 300.0)
    assert content.same_content(straight, _stale(content, 598.0, 598.0))
    assert content.same_content(straight, _stale(content, 2_000.0, 2_000.0))  # its score capped at 10


@pytest.mark.parametrize(
    ("raised_after", "age"),
    [
        pytest.param(598.0, 300.0, id="aged-from-its-own-start"),
        pytest.param(300.0, 298.0, id="two-seconds-off"),
        pytest.param(2_000.0, 1_300.0, id="both-capped"),
    ],
)
def test_staleness_alerts_aged_from_another_time_do_not_say_the_same(
    content: ModuleType, raised_after: float, age: float
) -> None:
    """A restart that aged the failure from its own start (main before fix/stalerestart) tells of another
    failure: still a divergence, also where both scores are capped alike."""
    straight = _stale(content, 1_900.0, 1_900.0) if age > 1_200 else _stale(content, 300.0, 300.0)
    assert not content.same_content(straight, _stale(content, raised_after, age))


def test_staleness_alerts_are_aged_from_the_tick_whose_good_read_it_is(content: ModuleType) -> None:
    """A process started between ticks (``--mid-tick``) read the tick before the failure 35 s after the
    uninterrupted run read it (fuzz seed 2): aged from that tick, its alert says the same; from another
    tick, not."""
    straight = content.read_at(_stale(content, 300.0, 300.0), {LAST_GOOD.timestamp(): 11})
    later = LAST_GOOD.timestamp() + 35.0
    assert content.same_content(straight, content.read_at(_stale(content, 335.0, 300.0), {later: 11}))
    assert not content.same_content(straight, content.read_at(_stale(content, 335.0, 300.0), {later: 10}))
    assert not content.same_content(straight, _stale(content, 335.0, 300.0))  # no tick's: its time

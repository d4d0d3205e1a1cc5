"""``benchmarks/alert_content.py``: which alerts the restart fuzz takes for saying the same."""

from __future__ import annotations

from types import ModuleType

import pytest

from gpuwarden.model import Alert, RecommendedAction
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

from __future__ import annotations

from alerting.inhibition import Inhibitor, InhibitRule
from alerting.matchers import parse_matcher


def _rule() -> InhibitRule:
    return InhibitRule(
        (parse_matcher('alertname="NodeDown"'),),
        (parse_matcher('severity=~"warning|critical"'),),
        ("node", "cluster"),
        "node-down",
    )


def test_firing_source_inhibits_target_with_equal_labels() -> None:
    inh = Inhibitor([_rule()])
    inh.update("s", {"alertname": "NodeDown", "node": "n1", "cluster": "c"}, True)
    target = {"alertname": "GPULost", "severity": "critical", "node": "n1", "cluster": "c"}
    assert inh.inhibited_by("t", target) == "node-down"
    assert inh.inhibiting("t", target) == "s"  # Alertmanager's inhibitedBy: the source alert, not the rule


def test_different_equal_label_or_resolved_source_does_not_inhibit() -> None:
    inh = Inhibitor([_rule()])
    inh.update("s", {"alertname": "NodeDown", "node": "n1", "cluster": "c"}, True)
    other = {"alertname": "GPULost", "severity": "critical", "node": "n2", "cluster": "c"}
    assert inh.inhibited_by("t", other) is None
    inh.update("s", {"alertname": "NodeDown", "node": "n1", "cluster": "c"}, False)
    same = {"alertname": "GPULost", "severity": "critical", "node": "n1", "cluster": "c"}
    assert inh.inhibited_by("t", same) is None


def test_missing_equal_label_counts_as_empty_on_both_sides() -> None:
    inh = Inhibitor([_rule()])
    inh.update("s", {"alertname": "NodeDown"}, True)
    assert inh.inhibited_by("t", {"alertname": "X", "severity": "warning"}) is not None


def test_alert_matching_both_sides_is_not_inhibited_by_its_peers() -> None:
    rule = InhibitRule((parse_matcher('severity="critical"'),), (parse_matcher('severity=~".+"'),), ("node",))
    inh = Inhibitor([rule])
    a = {"alertname": "A", "severity": "critical", "node": "n1"}
    b = {"alertname": "B", "severity": "critical", "node": "n1"}
    inh.update("a", a, True)
    inh.update("b", b, True)
    assert inh.inhibited_by("a", a) is None
    assert inh.inhibited_by("w", {"alertname": "W", "severity": "warning", "node": "n1"}) is not None

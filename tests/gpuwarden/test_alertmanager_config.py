"""The Alertmanager configuration ``/api/v2/status`` shows: one that Alertmanager's tools can parse."""

from __future__ import annotations

import yaml

from gpuwarden.alertmanager_config import alertmanager_config
from gpuwarden.config import AlertingConfig, InhibitRuleConfig
from tests.gpuwarden.api_client import TestClient


def test_the_config_is_alertmanagers_one_route_to_gpuwarden_with_the_inhibit_rules_in_its_syntax() -> None:
    rule = InhibitRuleConfig(
        name="node down mutes its gpus",
        source_matchers=["alertname=NodeDown"],
        target_matchers=['severity=~"warning|critical"'],
        equal=["node", "cluster"],
    )
    text = alertmanager_config(AlertingConfig(inhibit_rules=[rule], resolve_timeout_seconds=90))
    assert yaml.safe_load(text) == {
        "global": {"resolve_timeout": "90s"},
        "route": {"receiver": "gpuwarden"},
        "receivers": [{"name": "gpuwarden"}],
        "inhibit_rules": [
            {
                "source_matchers": ['alertname="NodeDown"'],
                "target_matchers": ['severity=~"warning|critical"'],
                "equal": ["node", "cluster"],
            }
        ],
    }
    # gpuwarden's own settings, which Alertmanager has no field for, are there for people to read.
    assert "#   correlation_window_seconds: 300.0" in text and "#   - name: node down mutes its gpus" in text


def test_without_inhibit_rules_there_is_no_inhibit_rules_key() -> None:
    assert "inhibit_rules" not in yaml.safe_load(alertmanager_config(AlertingConfig()))


def test_status_answers_with_the_alertmanager_config(client: TestClient) -> None:
    status = client.get("/api/v2/status").json()
    assert yaml.safe_load(status["config"]["original"])["route"] == {"receiver": "gpuwarden"}
    assert status["cluster"]["status"] == "disabled"

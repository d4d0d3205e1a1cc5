"""The Alertmanager configuration ``GET /api/v2/status`` shows as ``config.original``.

Tools parse that text as an Alertmanager config (``amtool config routes``, Grafana's Alertmanager data
source), so it is one: a single route to the one receiver every alert reaches, gpuwarden's inhibition rules
in Alertmanager's syntax, and ``global.resolve_timeout``. gpuwarden's own alerting section, which has no
Alertmanager equivalent (correlation, maintenance windows, inventories), follows as YAML comments, for
``amtool config show``.
"""

from __future__ import annotations

from typing import Any

import yaml

from alerting.matchers import parse_matcher
from gpuwarden.config import AlertingConfig, InhibitRuleConfig

RECEIVER = "gpuwarden"  # every alert reaches the incident engine


def alertmanager_config(alerting: AlertingConfig) -> str:
    """A valid Alertmanager configuration (YAML) saying what gpuwarden does with alerts."""
    config: dict[str, Any] = {
        "global": {"resolve_timeout": _duration(alerting.resolve_timeout_seconds)},
        "route": {"receiver": RECEIVER},
        "receivers": [{"name": RECEIVER}],
    }
    if alerting.inhibit_rules:
        config["inhibit_rules"] = [_inhibit_rule(rule) for rule in alerting.inhibit_rules]
    own = yaml.safe_dump({"alerting": alerting.model_dump(mode="json")}, sort_keys=False)
    commented = "".join(f"# {line}\n" if line else "#\n" for line in own.splitlines())
    header = (
        "# gpuwarden serve: every alert goes to the incident engine, which correlates alerts into incidents\n"
        "# (no routing tree, no grouping timers). Its alerting configuration:\n"
    )
    return header + commented + yaml.safe_dump(config, sort_keys=False)


def _inhibit_rule(rule: InhibitRuleConfig) -> dict[str, Any]:
    """One rule as Alertmanager writes it (``name`` is left out: Alertmanager before 0.29 refuses it)."""
    out: dict[str, Any] = {
        "source_matchers": [str(parse_matcher(m)) for m in rule.source_matchers],
        "target_matchers": [str(parse_matcher(m)) for m in rule.target_matchers],
    }
    if rule.equal:
        out["equal"] = list(rule.equal)
    return out


def _duration(seconds: float) -> str:
    """Prometheus' duration syntax: whole milliseconds at least."""
    ms = max(1, round(seconds * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"

"""gpuwarden's Alertmanager API v2 answers as a real Alertmanager 0.25 and its amtool do, step by step
(``tests/integration/am_diff.py``): alert posts and listings with every filter, inhibition, silences and
their filters, updates and expiry, amtool's alert and silence commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.am_diff import KNOWN, STEPS, Probe, alertmanager_and_gpuwarden, summary


@pytest.mark.integration
def test_gpuwarden_answers_every_probe_step_as_alertmanager_does(tmp_path: Path) -> None:
    with alertmanager_and_gpuwarden(tmp_path) as (am, gw):
        outcomes = Probe(am, gw).run()
    result = summary(outcomes)
    differing = {o.step: [o.alertmanager, o.gpuwarden] for o in outcomes if o.step in result["unexpected"]}
    assert result["unexpected"] == [], json.dumps(differing, default=str, indent=1)[:6000]
    assert result["steps"] == len(STEPS) and set(result["known"]) <= set(KNOWN)
    # The probe compares what it must: both servers listed the batch's alerts, inhibited and silenced.
    listed = {o.step: o.gpuwarden for o in outcomes}
    labels = [(json.loads(a[0]), a[3]) for a in listed["alerts-all"]]
    states = {(x["alertname"], x.get("node")): state for x, state in labels}
    assert states[("GpuHot", "n1")] == "suppressed" and states[("GpuHot", "n2")] == "active"
    assert states[("Copy", None)] == states[("Word", None)] == "active"
    assert [json.loads(a[0])["alertname"] for a in listed["alerts-silenced"]] == ["A"]
    assert listed["silences-filter-eq"] and listed["amtool-silence-query-expired"]

"""The incident engine's muting: silences, maintenance windows (by the inventory's racks too) and
inhibition rules, and what a muted alert opens once its mute ends."""

from __future__ import annotations

from datetime import timedelta

import pytest

from alerting import scenarios
from alerting.matchers import parse_matcher
from gpuwarden.clock import FakeClock
from gpuwarden.config import InhibitRuleConfig, MaintenanceWindowConfig
from gpuwarden.errors import InputError
from gpuwarden.model import Alert, AlertStatus
from tests.alerting.incident_engines import _engine, _gpu_alert, _open


def test_silenced_alert_is_stored_but_opens_no_incident(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock)
    engine.add_silence([parse_matcher('node=~"x.*"')], clock.now(), clock.now() + timedelta(hours=1), "me")
    alert = Alert({"alertname": "NodeDown", "node": "x1"})
    assert engine.ingest([alert]).muted == 1
    assert _open(engine) == []
    row = engine.store.alert(alert.fingerprint)
    assert row is not None and row.muted_by is not None and row.muted_by.startswith("silence:")
    clock.advance(3601)
    other = Alert({"alertname": "NodeDown", "node": "x2"})
    engine.ingest([other])
    assert len(_open(engine)) == 1


def test_ended_silences_and_windows_load_though_a_new_silence_may_not_end_in_the_past(
    db: str, clock: FakeClock
) -> None:
    start = clock.now()
    engine = _engine(db, clock)
    made = engine.add_silence([parse_matcher('node="x1"')], start, start + timedelta(hours=1), "me")
    clock.advance(7200)  # the stored silence has ended; only a new one is checked against the clock
    with pytest.raises(InputError, match="endsAt"):
        engine.add_silence([parse_matcher('node="x1"')], start, start + timedelta(hours=1), "me")
    window = MaintenanceWindowConfig(
        matchers=['rack="r02"'], starts_at=start, ends_at=start + timedelta(hours=1)
    )
    restarted = _engine(db, clock, maintenance_windows=[window])
    assert {s.id: s.state(clock.now()) for s in restarted.all_silences()} == {
        "maintenance-0": "expired",
        made: "expired",
    }


def test_maintenance_window_from_config_mutes_matching_alerts(db: str, clock: FakeClock) -> None:
    window = MaintenanceWindowConfig(
        matchers=['rack="r02"'], starts_at=clock.now(), ends_at=clock.now() + timedelta(hours=2)
    )
    engine = _engine(db, clock, maintenance_windows=[window])
    engine.ingest([Alert({"alertname": "NodeDown", "rack": "r02", "node": "a"})])
    engine.ingest([Alert({"alertname": "NodeDown", "rack": "r03", "node": "b"})])
    assert [i[3]["name"] for i in _open(engine)] == ["b"]


def test_a_maintenance_window_on_a_rack_mutes_its_nodes_alerts_that_carry_no_rack_label(
    db: str, clock: FakeClock
) -> None:
    # The exporter's and node exporter's alerts name a node, not its rack: the inventory places them.
    window = MaintenanceWindowConfig(
        matchers=['rack="r02"'], starts_at=clock.now(), ends_at=clock.now() + timedelta(hours=2)
    )
    engine = _engine(db, clock, scenarios.fleet_inventory(), maintenance_windows=[window])
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r02-n02"})])
    engine.ingest([_gpu_alert("r02-n05", 3, "GPULost")])
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r03-n01"})])
    assert [i[3]["name"] for i in _open(engine)] == ["r03-n01"]
    assert engine.muted_count() == 2
    # A silence (Alertmanager's kind) matches the alert's own labels only.
    engine.add_silence(
        [parse_matcher('rack="r04"')], clock.now(), clock.now() + timedelta(hours=1), "op", comment="x"
    )
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r04-n01"})])
    assert sorted(i[3]["name"] for i in _open(engine)) == ["r03-n01", "r04-n01"]
    clock.advance(2 * 3600 + 1)
    engine.tick()  # the window ended with its alerts still firing: they open their incident now
    # A node down and one GPU lost on another node of the rack: two faults, each its own incident.
    assert sorted(i[3].get("name") or i[3]["node"] for i in _open(engine)) == [
        "r02-n02",
        "r02-n05",
        "r03-n01",
        "r04-n01",
    ]


def test_inhibition_rule_mutes_targets_while_the_source_fires(db: str, clock: FakeClock) -> None:
    rule = InhibitRuleConfig(
        source_matchers=['alertname="ClusterMaintenance"'],
        target_matchers=['severity="warning"'],
        equal=["cluster"],
    )
    engine = _engine(db, clock, inhibit_rules=[rule])
    source = Alert({"alertname": "ClusterMaintenance", "cluster": "c1", "severity": "info"})
    engine.ingest([source])
    target = Alert({"alertname": "GPUThermal", "cluster": "c1", "node": "a", "severity": "warning"})
    result = engine.ingest([target])
    assert result.muted == 1
    # Alertmanager's inhibitedBy names the inhibiting alert, by fingerprint.
    assert engine.mute_state(target.fingerprint, target.labels) == ([], [source.fingerprint])
    result = engine.ingest(
        [Alert({"alertname": "GPUThermal", "cluster": "c2", "node": "a", "severity": "warning"})]
    )
    assert result.muted == 0


@pytest.mark.parametrize("restart", [False, True], ids=["running", "restarted-during-the-window"])
def test_an_alert_still_firing_when_its_maintenance_window_ends_opens_an_incident_then(
    db: str, clock: FakeClock, restart: bool
) -> None:
    window = MaintenanceWindowConfig(
        matchers=['rack="r02"'], starts_at=clock.now(), ends_at=clock.now() + timedelta(minutes=30)
    )
    engine = _engine(db, clock, maintenance_windows=[window])
    labels = {"alertname": "NodeDown", "rack": "r02", "node": "a"}
    for minute in range(45):  # Prometheus re-posts every minute, endsAt 4 minutes ahead
        if restart and minute == 10:
            engine = _engine(db, clock, maintenance_windows=[window])
        engine.ingest([Alert(labels, ends_at=clock.now() + timedelta(minutes=4))])
        engine.tick()
        opened = _open(engine)
        assert (len(opened) == 1) is (minute >= 30), minute
        clock.advance(60)
    assert engine.store.get(opened[0][0]).alert_fingerprints == [Alert(labels).fingerprint]


def test_an_inhibited_alert_opens_an_incident_when_its_inhibiting_alert_resolves(
    db: str, clock: FakeClock
) -> None:
    rule = InhibitRuleConfig(
        source_matchers=['alertname="ClusterMaintenance"'],
        target_matchers=['severity="warning"'],
        equal=["cluster"],
    )
    engine = _engine(db, clock, inhibit_rules=[rule])
    source = {"alertname": "ClusterMaintenance", "cluster": "c1", "severity": "info"}
    engine.ingest([Alert(source)])
    (maintenance,) = _open(engine)
    target = Alert({"alertname": "GPUThermal", "cluster": "c1", "node": "a", "severity": "warning"})
    assert engine.ingest([target]).muted == 1
    engine.tick()
    assert [i[0] for i in _open(engine)] == [maintenance[0]]
    engine.ingest([Alert(source, status=AlertStatus.RESOLVED)])
    engine.tick()  # no re-post needed: Alertmanager's webhook repeats only every repeat_interval
    row = engine.store.alert(target.fingerprint)
    assert row is not None and row.muted_by is None and row.incident_id is not None
    assert row.incident_id in {i[0] for i in _open(engine)}


def test_silence_incident_mutes_its_alerts_for_the_duration(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock)
    labels = {"alertname": "NodeDown", "node": "x1"}
    engine.ingest([Alert(labels)])
    (inc,) = _open(engine)
    silenced = engine.silence_incident(inc[0], 3600, "carol")
    assert silenced.timeline[-1].kind == "silenced"
    assert any(s.incident_id == inc[0] for s in engine.silences())

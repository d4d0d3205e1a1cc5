from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.matchers import parse_matcher
from alerting.store import IncidentNotFound
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig, InhibitRuleConfig, MaintenanceWindowConfig
from gpuwarden.errors import InputError
from gpuwarden.model import (
    Alert,
    AlertStatus,
    FaultKind,
    GpuRef,
    IncidentState,
    NodeRef,
    Priority,
    RackRef,
    RecommendedAction,
    WorkloadKind,
    WorkloadRef,
)
from tests.migrated_store import migrated_sqlite


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A store at the newest revision: a copy of one migrated once per process (``migrated_sqlite``)."""
    path = tmp_path / "incidents.db"
    migrated_sqlite(path).dispose()
    return str(path)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _engine(
    db: str, clock: FakeClock, inventory: StaticInventory | None = None, **cfg: object
) -> IncidentEngine:
    cfg.setdefault("announce_delay_seconds", 0)
    config = AlertingConfig(**cfg)  # type: ignore[arg-type]
    return IncidentEngine(make_engine(db), clock, config, inventory)


def _ingest_in_batches(engine: IncidentEngine, alerts: list[Alert], size: int = 25) -> None:
    for i in range(0, len(alerts), size):
        engine.ingest(alerts[i : i + size])


def _open(engine: IncidentEngine) -> list[tuple[str, str, str, dict[str, object], int]]:
    return [
        (r.id, r.priority, r.root_kind, r.root_target, n)
        for r, n in engine.store.list_rows()
        if r.state != IncidentState.RESOLVED.value
    ]


def _rack_down(db: str, clock: FakeClock) -> IncidentEngine:
    """An engine whose fleet has no spare GPUs, holding rack r07's outage (training job llm-70b stopped)."""
    engine = _engine(db, clock, scenarios.fleet_inventory(spare_gpus=0))
    engine.ingest(scenarios.rack_failure(7, clock.now()))
    return engine


def _gpu_alert(node: str, gpu: int, name: str = "GPUXid", **extra: str) -> Alert:
    return Alert({"alertname": name, "cluster": "c1", "Hostname": node, "gpu": str(gpu), **extra})


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["order0", "order1", "order2"])
def test_rack_failure_storm_becomes_one_p0_incident_rooted_at_the_rack(
    db: str, clock: FakeClock, seed: int
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory(spare_gpus=0))
    storm = scenarios.rack_failure(7, clock.now(), seed=seed)
    assert len(storm) > 250
    _ingest_in_batches(engine, storm)
    incidents = _open(engine)
    assert len(incidents) == 1
    _, priority, kind, target, count = incidents[0]
    assert (priority, kind, target["type"], target["name"]) == ("P0", "rack_down", "rack", "r07")
    assert count == len(storm)
    incident = engine.store.get(incidents[0][0])
    assert incident.root_cause.target == RackRef("c1", "r07")
    assert "8 nodes" in incident.title and "64 GPUs" in incident.title and "llm-70b stopped" in incident.title
    assert WorkloadRef(WorkloadKind.TRAINING_JOB, "research", "llm-70b", "c1") in incident.impact.workloads


def test_rack_failure_with_spare_capacity_is_p1(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory(spare_gpus=128))
    _ingest_in_batches(engine, scenarios.rack_failure(7, clock.now()))
    assert [i[1] for i in _open(engine)] == ["P1"]


def test_two_unrelated_faults_at_once_stay_two_incidents(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    alerts = scenarios.rack_failure(7, clock.now()) + scenarios.node_failure(3, 2, clock.now())
    alerts.sort(key=lambda a: a.fingerprint)  # interleave the two faults
    _ingest_in_batches(engine, alerts)
    found = sorted((i[2], i[3]["name"], i[1]) for i in _open(engine))
    assert found == [("node_down", "r03-n02", "P2"), ("rack_down", "r07", "P0")]


def test_two_xids_on_different_racks_do_not_merge_but_a_node_down_absorbs_its_gpu(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert("r02-n01", 3, xid="13")])
    engine.ingest([_gpu_alert("r05-n04", 1, xid="13")])
    assert len(_open(engine)) == 2
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r02-n01"})])
    roots = sorted((i[2], i[3].get("name") or i[3]["node"]) for i in _open(engine))
    assert roots == [("node_down", "r02-n01"), ("xid", "r05-n04")]


def test_single_non_fatal_xid_on_an_idle_gpu_is_p3(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert("r02-n01", 3, xid="13")])
    (inc,) = _open(engine)
    assert inc[1] == "P3"
    assert engine.store.get(inc[0]).root_cause.target == GpuRef(
        "r02-n01", 3, scenarios.gpu_uuid("r02-n01", 3)
    )


def test_priority_is_reevaluated_as_impact_grows_and_the_change_is_on_the_timeline(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    # Service chat has one replica on GPU 0 of each r01 node: one replica lost is P2.
    engine.ingest([_gpu_alert("r01-n01", 0, "GPULost")])
    (inc,) = _open(engine)
    assert inc[1] == "P2"
    # Losing the rest of the service's replicas (the rack) makes the endpoint unavailable: P0.
    engine.ingest(
        [Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"r01-n0{n}"}) for n in range(1, 9)]
    )
    (inc,) = _open(engine)
    assert inc[1] == "P0"
    timeline = engine.store.get(inc[0]).timeline
    changes = [e.data for e in timeline if e.kind == "priority"]
    assert changes[0]["to"] == "P2"
    assert changes[-1] == {"from": "P2", "to": "P0", "reason": "inference service completely unavailable"}


def test_repeated_posts_are_deduplicated_by_fingerprint(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock)
    alert = Alert({"alertname": "NodeDown", "cluster": "c1", "node": "x1"})
    for _ in range(5):
        engine.ingest([alert])
        clock.advance(10)
    (inc,) = _open(engine)
    assert inc[4] == 1
    row = engine.store.alert(alert.fingerprint)
    assert row is not None and row.receive_count == 5
    assert [e.kind for e in engine.store.get(inc[0]).timeline].count("alert_added") == 1


def test_listeners_see_changes_only_after_commit(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock)
    seen: list[tuple[ChangeKind, int]] = []

    def listener(change: IncidentChange) -> None:
        # Read through a separate engine: the change must already be committed.
        other = IncidentEngine(make_engine(db), clock)
        seen.append((change.kind, len(other.store.get(change.incident.id).alert_fingerprints)))

    engine.subscribe(listener)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "x1"})])
    assert seen and seen[0] == (ChangeKind.OPENED, 1)


def test_a_failing_listener_does_not_break_ingest(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock)

    def broken(change: IncidentChange) -> None:
        raise RuntimeError("boom")

    engine.subscribe(broken)
    engine.ingest([Alert({"alertname": "NodeDown", "node": "x1"})])
    assert len(_open(engine)) == 1
    assert engine.counters["listener_errors"] >= 1


def test_lifecycle_auto_resolves_after_quiet_period_and_reopens_on_recurrence(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, quiet_period_seconds=300)
    changes: list[ChangeKind] = []
    engine.subscribe(lambda c: changes.append(c.kind))
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    engine.ingest([Alert(labels)])
    (inc,) = _open(engine)
    assert engine.acknowledge(inc[0], "alice").state is IncidentState.ACKNOWLEDGED
    assert engine.approve_remediation(inc[0], "bob").state is IncidentState.MITIGATING
    clock.advance(60)
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])
    clock.advance(299)
    engine.tick()
    assert engine.store.get(inc[0]).state is IncidentState.MITIGATING
    clock.advance(2)
    engine.tick()
    resolved = engine.store.get(inc[0])
    assert resolved.state is IncidentState.RESOLVED and resolved.resolved_at == clock.now()
    clock.advance(600)
    engine.ingest([Alert(labels)])
    reopened = engine.store.get(inc[0])
    assert reopened.state is IncidentState.TRIGGERED and reopened.resolved_at is None
    assert changes == [
        ChangeKind.OPENED,
        ChangeKind.ACKNOWLEDGED,
        ChangeKind.MITIGATING,
        ChangeKind.UPDATED,
        ChangeKind.RESOLVED,
        ChangeKind.REOPENED,
    ]


def test_a_recurrence_after_the_reopen_window_is_a_new_incident(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, quiet_period_seconds=300, reopen_window_seconds=3600)
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    began = clock.now()
    engine.ingest([Alert(labels)])
    [first] = engine.open_incident_ids()
    clock.advance(60)
    ended = clock.now()
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED, ends_at=ended)])
    clock.advance(301)
    engine.tick()
    postmortem = engine.postmortem(first)
    clock.advance(3601)
    engine.ingest([Alert(labels)])
    [second] = engine.open_incident_ids()
    assert second != first
    assert engine.store.get(first).state is IncidentState.RESOLVED
    fingerprint = Alert(labels).fingerprint
    assert engine.store.get(second).alert_fingerprints == [fingerprint]
    # The resolved incident's record stays as it was: its alert, as it saw it, and its postmortem.
    assert engine.store.get(first).alert_fingerprints == [fingerprint]
    assert {r.id: n for r, n in engine.store.list_rows()} == {first: 1, second: 1}  # listed as shown
    [(kept, status, starts, ends)] = [
        (a.fingerprint, a.status, a.starts_at, a.ends_at) for a in engine.store.alerts_of(first)
    ]
    assert (kept, status, starts, ends) == (fingerprint, "resolved", began, ended)
    again = engine.postmortem(first).splitlines()
    assert [line for line in again if line not in postmortem.splitlines()] == [
        f"- {clock.now():%Y-%m-%dT%H:%M:%S}Z — NodeDown (x1) fired again after the reopen window: a new"
        " incident takes it"
    ]  # the rest (evidence, MTTD, MTTR) as it was
    assert [a.starts_at for a in engine.store.alerts_of(second)] == [clock.now()]


def test_alert_whose_ends_at_passed_resolves_on_tick(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, quiet_period_seconds=0)
    alert = Alert({"alertname": "NodeDown", "node": "x1"}, ends_at=clock.now() + timedelta(seconds=60))
    engine.ingest([alert])
    clock.advance(61)
    engine.tick()
    engine.tick()
    row = engine.store.alert(alert.fingerprint)
    assert row is not None and row.status == "resolved"
    assert _open(engine) == []


THROTTLING = {"alertname": "GPUThermalThrottling", "Hostname": "x1", "gpu": "0"}


def _flap_then_resolve(engine: IncidentEngine, clock: FakeClock, cycles: int, step: float) -> dict[str, str]:
    """Fire, then ``cycles`` times resolve and fire again ``step`` seconds apart, then resolve."""
    engine.ingest([Alert(THROTTLING)])
    for _ in range(cycles):
        clock.advance(step)
        engine.ingest([Alert(THROTTLING, status=AlertStatus.RESOLVED)])
        clock.advance(step)
        engine.ingest([Alert(THROTTLING)])
    clock.advance(step)
    engine.ingest([Alert(THROTTLING, status=AlertStatus.RESOLVED)])
    return THROTTLING


def test_flapping_alert_keeps_its_incident_open_and_is_marked(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, quiet_period_seconds=30, flap_start_transitions=4, flap_stop_transitions=1)
    labels = _flap_then_resolve(engine, clock, cycles=3, step=20)
    clock.advance(60)
    engine.tick()
    (inc,) = _open(engine)
    kinds = [e.kind for e in engine.store.get(inc[0]).timeline]
    assert "flapping_started" in kinds
    row = engine.store.alert(Alert(labels).fingerprint)
    assert row is not None and row.flapping


def test_an_alert_that_stopped_flapping_and_stays_resolved_lets_its_incident_resolve(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, quiet_period_seconds=300, flap_window_seconds=600)
    labels = _flap_then_resolve(engine, clock, cycles=4, step=30)  # and it stays resolved
    (inc,) = _open(engine)
    for _ in range(40):  # 20 minutes of ticks: the flap window empties, then the quiet period passes
        clock.advance(30)
        engine.tick()
    incident = engine.store.get(inc[0])
    kinds = [e.kind for e in incident.timeline]
    assert incident.state is IncidentState.RESOLVED
    assert kinds.index("flapping_started") < kinds.index("flapping_stopped") < kinds.index("resolved")
    row = engine.store.alert(Alert(labels).fingerprint)
    assert row is not None and not row.flapping


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


def test_state_survives_a_restart_of_the_engine(db: str, clock: FakeClock) -> None:
    inventory = scenarios.fleet_inventory()
    first = _engine(db, clock, inventory)
    storm = scenarios.rack_failure(7, clock.now())
    _ingest_in_batches(first, storm[:100])
    second = _engine(db, clock, inventory)
    _ingest_in_batches(second, storm[100:])
    (inc,) = _open(second)
    assert (inc[2], inc[4]) == ("rack_down", len(storm))


def test_job_stall_first_then_its_node_down_roots_the_incident_at_the_node(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([Alert({"alertname": "TrainingJobStalled", "slurm_job": "llm-70b"})])
    (inc,) = _open(engine)
    assert inc[2] == FaultKind.JOB_STALLED.value
    clock.advance(30)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r07-n01"})])
    (inc,) = _open(engine)
    assert engine.store.get(inc[0]).root_cause.target == NodeRef("r07-n01", "c1", "r07")


def test_unknown_incident_actions_raise_not_found(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock)
    with pytest.raises(IncidentNotFound):
        engine.acknowledge("inc-missing", "x")


def test_new_incidents_are_announced_after_the_delay_and_merged_ones_never(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory(), announce_delay_seconds=10)
    seen: list[tuple[ChangeKind, str]] = []
    # A listener that told nobody of an incident passes on nothing of it marked only_if_told (its end).
    engine.subscribe(lambda c: c.only_if_told or seen.append((c.kind, c.incident.root_cause.kind.value)))
    engine.ingest([_gpu_alert("r07-n01", 0, "GPULost")])
    engine.ingest([_gpu_alert("r07-n02", 0, "GPULost")])
    for n in range(1, 9):  # the whole rack
        engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"r07-n0{n}"})])
    clock.advance(9)
    engine.tick()
    assert seen == []
    clock.advance(1)
    engine.tick()
    assert seen == [(ChangeKind.OPENED, "rack_down")]
    clock.advance(1)
    engine.ingest([_gpu_alert("r07-n05", 3, "GPULost")])
    assert seen[-1][0] is ChangeKind.UPDATED


def test_incident_resolved_before_its_announcement_is_never_announced(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, announce_delay_seconds=30, quiet_period_seconds=5)
    seen: list[ChangeKind] = []
    engine.subscribe(lambda c: c.only_if_told or seen.append(c.kind))
    labels = {"alertname": "NodeDown", "node": "x1"}
    engine.ingest([Alert(labels)])
    clock.advance(2)
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])
    clock.advance(6)
    engine.tick()
    clock.advance(60)
    engine.tick()
    assert seen == []


def test_priority_drops_as_alerts_resolve_but_the_peak_stays_once_all_resolved(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    down = [Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"r01-n0{n}"}) for n in range(1, 9)]
    engine.ingest(down)
    (inc,) = _open(engine)
    assert inc[1] == "P0"
    clock.advance(60)
    engine.ingest([Alert(a.labels, status=AlertStatus.RESOLVED) for a in down[1:]])
    assert engine.store.get(inc[0]).priority is Priority.P2  # one replica of chat still lost
    clock.advance(60)
    engine.ingest([Alert(down[0].labels, status=AlertStatus.RESOLVED)])
    incident = engine.store.get(inc[0])
    assert incident.priority is Priority.P2
    assert incident.timeline[-1].kind == "quiet"


def test_an_unknown_kind_incident_title_names_the_alert_and_metric_seen(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    labels = {"for": "DCGM_FI_DEV_POWER_USAGE", "model": "mad"}
    engine.ingest([_gpu_alert("r02-n01", 3, name="GpuwardenAnomaly", **labels)])
    (row, _), *_ = engine.store.list_rows()
    assert row.root_kind == "unknown"
    assert "GpuwardenAnomaly on DCGM_FI_DEV_POWER_USAGE" in row.title and "unknown" not in row.title


def test_anomalies_on_several_gpus_of_one_node_join_one_node_level_incident(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    for gpu in range(5):
        engine.ingest([_gpu_alert("r02-n01", gpu, name="GpuwardenAnomaly", **{"for": "m"})])
        clock.advance(5)
    (incident,) = _open(engine)
    assert incident[3].get("name") == "r02-n01" or incident[3].get("node") == "r02-n01"


def test_the_same_anomaly_on_gpus_of_several_nodes_of_one_rack_rolls_up_to_the_rack(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    for node in ("r02-n01", "r02-n01", "r02-n02", "r02-n03"):
        gpu = len(_open(engine))
        engine.ingest([_gpu_alert(node, gpu, name="GpuwardenAnomaly", **{"for": "m"})])
        clock.advance(5)
    (incident,) = _open(engine)
    assert incident[3].get("name") == "r02" or incident[3].get("rack") == "r02"


def test_single_gpu_faults_on_two_nodes_of_one_rack_stay_separate(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert("r02-n01", 3, xid="13")])
    engine.ingest([_gpu_alert("r02-n04", 1, xid="13")])
    assert len(_open(engine)) == 2


def test_changes_carry_what_the_firing_alerts_recommend(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, quiet_period_seconds=0)
    seen: list[tuple[ChangeKind, tuple[str, ...]]] = []
    engine.subscribe(lambda c: seen.append((c.kind, c.recommended)))
    xid = {"alertname": "GpuXid", "xid": "79", "cluster": "c1", "node": "x1", "gpu": "3"}
    down = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    noise = {"alertname": "GpuXid", "xid": "63", "cluster": "c1", "node": "x1", "gpu": "4"}  # informational
    engine.ingest(
        [
            Alert(noise, recommended_action=RecommendedAction.IGNORE),
            Alert(xid, recommended_action=RecommendedAction.RESTART_NODE),
            Alert(down, recommended_action=RecommendedAction.INVESTIGATE),
        ]
    )
    # Most drastic first, no "ignore"; XID 79's follow-up in the catalog (CONTACT_SUPPORT) after its reboot.
    assert seen[0] == (ChangeKind.OPENED, ("restart_node", "contact_support", "investigate"))
    clock.advance(60)
    before = len(seen)
    engine.ingest([Alert(xid, status=AlertStatus.RESOLVED)])  # the XID alert ends, the node is still down
    assert len(seen) > before and seen[-1][1] == ("investigate",)  # only firing alerts recommend


def test_a_rebuild_after_a_failed_transaction_does_not_announce_incidents_again(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock)
    opened: list[str] = []
    engine.subscribe(lambda c: opened.append(c.incident.id) if c.kind is ChangeKind.OPENED else None)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "x1"})])
    assert len(opened) == 1
    (incident_id,) = opened
    engine._open.pop(incident_id)  # a failed transaction may have changed the view (a merge), then
    engine._reload()  # rebuilds it from the store, as a failed transaction does
    clock.advance(30)
    engine.tick()
    assert len(opened) == 1
    restarted = _engine(db, clock)  # a new process: the store says it was announced (announced_at)
    restarted.subscribe(lambda c: opened.append(c.incident.id) if c.kind is ChangeKind.OPENED else None)
    restarted.tick()
    assert len(opened) == 1
    with make_engine(db).begin() as conn:  # one that crashed before storing the announcement: it does
        conn.execute(text("UPDATE incidents SET announced_at = NULL"))
    restarted = _engine(db, clock)
    restarted.subscribe(lambda c: opened.append(c.incident.id) if c.kind is ChangeKind.OPENED else None)
    restarted.tick()
    assert len(opened) == 2


def test_a_rebuild_does_not_announce_a_reopened_incident_as_opened(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, quiet_period_seconds=5)
    opened: list[str] = []
    engine.subscribe(lambda c: opened.append(c.incident.id) if c.kind is ChangeKind.OPENED else None)
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    engine.ingest([Alert(labels)])
    clock.advance(10)
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])
    clock.advance(10)
    engine.tick()  # resolved after the quiet period
    engine.ingest([Alert(labels)])  # it fires again: reopened
    assert len(opened) == 1
    engine._reload()  # a failed transaction's rebuild
    clock.advance(30)
    engine.tick()
    assert len(opened) == 1


def test_nodes_of_one_name_in_two_clusters_are_two_nodes_with_their_own_workloads(
    db: str, clock: FakeClock
) -> None:
    # Two Slurm clusters both name their first node gpu001; each runs its own job there.
    nodes = [NodeInfo("gpu001", c, "r1", 8) for c in ("east", "west")]
    east = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "pretrain", "east")
    west = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "eval", "west")
    workloads = [
        WorkloadInfo(east, tuple(frozenset({("east", "gpu001", i)}) for i in range(8))),
        WorkloadInfo(west, (frozenset({("west", "gpu001", 0)}),)),
    ]
    engine = _engine(db, clock, StaticInventory(nodes, workloads, {"east": 0, "west": 0}))
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "west", "node": "gpu001"})])
    (row,) = _open(engine)
    impact = engine.store.get(row[0]).impact
    assert impact.workloads == (west,) and impact.gpus_affected == 8 and impact.nodes_affected == 1
    assert row[3] == {"type": "node", "cluster": "west", "rack": "r1", "name": "gpu001"}
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "east", "node": "gpu001"})])
    impacts = [engine.store.get(r[0]).impact.workloads for r in _open(engine)]
    assert len(impacts) == 2 and set(impacts) == {
        (east,),
        (west,),
    }  # two incidents: two machines, each stopping its own job


def test_faults_on_nodes_of_unknown_racks_stay_apart_and_root_at_their_own_component(
    db: str, clock: FakeClock
) -> None:
    # No inventory, no `rack` label: the common setup. An unknown rack used to cut every root at the
    # cluster, so the third fault below joined the first two as "cluster c1 is down".
    engine = _engine(db, clock)
    engine.ingest([_gpu_alert("n02", 1, name="GpuThermalHigh")])
    engine.ingest([_gpu_alert("n07", 5, name="GpuEccDbe")])
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "n09"})])
    engine.ingest(
        [Alert({"alertname": "NodeDown", "node": "zz01"}), Alert({"alertname": "NodeDown", "node": "zz02"})]
    )
    roots = sorted((r[3]["type"], r[3].get("node") or r[3].get("name")) for r in _open(engine))
    assert roots == [("gpu", "n02"), ("gpu", "n07"), ("node", "n09"), ("node", "zz01"), ("node", "zz02")]
    # A node the inventory does not know, in a cluster it does, stays a node too.
    known = _engine(db, clock, scenarios.fleet_inventory())
    known.ingest([_gpu_alert("r02-n01", 3, xid="13")])
    known.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "zz09"})])
    roots = {(r[3]["type"], r[3].get("node") or r[3].get("name")) for r in _open(known)}
    assert {("gpu", "r02-n01"), ("node", "zz09")} <= roots and len(roots) == 7  # with the five above


def test_the_same_fault_on_nodes_of_unknown_racks_rolls_up_to_the_cluster(db: str, clock: FakeClock) -> None:
    # A driver rollout seen without rack labels: two GPUs of one node, then other nodes.
    engine = _engine(db, clock)
    for node, gpu in (("n1", 0), ("n1", 1), ("n2", 0), ("n3", 4)):
        engine.ingest([_gpu_alert(node, gpu, xid="119")])
        clock.advance(5)
    (incident,) = _open(engine)
    assert incident[3] == {"type": "cluster", "name": "c1"} and incident[4] == 4


def test_a_node_down_and_a_gpu_lost_on_another_node_are_not_a_rack_power_loss(
    db: str, clock: FakeClock
) -> None:
    # The service runs one replica on GPU 0 of each node of rack r01.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"})])
    engine.ingest([_gpu_alert("r01-n02", 7, "GPULost")])  # an idle GPU of another node: another fault
    assert sorted((r[1], r[2], r[3]["type"]) for r in _open(engine)) == [
        ("P2", "gpu_lost", "gpu"),
        ("P2", "node_down", "node"),  # one of eight replicas lost; it was P0, "rack r01 lost power"
    ]
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r01-n03"})])
    (row,) = _open(engine)  # two nodes down: the rack's incident, which took in the lost GPU's
    incident = engine.store.get(row[0])
    # Two of eight nodes down are two nodes, not the rack (a PDU or half a rack): what they held counts.
    assert incident.title.startswith("rack r01 partial outage: 3 nodes, 17 GPUs")
    assert incident.impact.affected_share == 2 / 8 and incident.priority.value == "P1"
    for n in range(1, 9):
        engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"r01-n0{n}"})])
    incident = engine.store.get(row[0])
    assert incident.root_cause.kind is FaultKind.RACK_DOWN  # every node down: the rack
    assert incident.title.startswith("rack r01 lost power: 8 nodes, 64 GPUs")


def test_single_gpus_lost_on_two_nodes_of_a_rack_minutes_apart_are_two_faults(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert("r05-n01", 2, "GpuXidError", xid="79")])
    clock.advance(180)
    engine.ingest([_gpu_alert("r05-n06", 4, "GpuXidError", xid="79")])
    assert sorted(r[3]["node"] for r in _open(engine)) == ["r05-n01", "r05-n06"]


def test_a_rack_whose_gpus_alert_before_its_nodes_go_down_is_one_incident(db: str, clock: FakeClock) -> None:
    # Each node's GPUs lost first (their own incident per node), then the nodes: one rack incident.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    for n in range(1, 9):
        engine.ingest([_gpu_alert(f"r06-n0{n}", 0, "GPULost")])
    for n in range(1, 9):
        engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"r06-n0{n}"})])
    ((_, priority, kind, target, count),) = _open(engine)
    assert (priority, kind, target["name"], count) == ("P2", "rack_down", "r06", 16)


def test_an_error_ratio_in_the_annotations_sets_and_changes_the_priority(db: str, clock: FakeClock) -> None:
    # Prometheus rules put the value in an annotation ({{ $value }}); re-posts carry the new value.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    labels = {"alertname": "ChatHighErrorRate", "cluster": "c1", "namespace": "serving", "service": "chat"}
    priorities = []
    for ratio in ("0.3", "0.9", "NaN", "0.2"):
        engine.ingest([Alert(labels, annotations={"error_ratio": ratio, "summary": "errors"})])
        ((incident, priority, *_),) = _open(engine)
        priorities.append((priority, engine.store.get(incident).impact.error_ratio))
        clock.advance(30)
    assert priorities == [("P1", 0.3), ("P0", 0.9), ("P2", 0.0), ("P2", 0.2)]
    timeline = [e.kind for e in engine.store.get(incident).timeline]
    assert timeline == ["opened", "alert_added", "priority", "priority", "priority"]  # none per re-post


def test_a_repeat_that_changes_its_recommended_action_is_what_the_incident_recommends(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock)
    seen: list[tuple[str, ...]] = []
    engine.subscribe(lambda c: seen.append(c.recommended))
    anomaly = {"alertname": "GpuwardenAnomaly", "cluster": "c1", "node": "n03", "gpu": "7"}
    engine.ingest([Alert(anomaly, recommended_action=RecommendedAction.INVESTIGATE)])
    assert seen[-1] == ("investigate",)
    engine.ingest([Alert(anomaly, recommended_action=RecommendedAction.RESET_GPU)])
    assert seen[-1] == ("reset_gpu",)
    ((incident, *_),) = _open(engine)
    assert [a.recommended_action for a in engine.store.alerts_of(incident)] == ["reset_gpu"]
    before = len(seen)
    engine.ingest([Alert(anomaly, recommended_action=RecommendedAction.RESET_GPU)])  # a plain repeat
    assert len(seen) == before


@pytest.mark.parametrize("name", ["InferenceServiceDown", "chat_service_down", "ChatEndpointUnavailable"])
def test_a_service_down_alert_is_p0_however_its_name_is_spelled(db: str, clock: FakeClock, name: str) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([Alert({"alertname": name, "cluster": "c1", "namespace": "serving", "service": "chat"})])
    assert [row[1] for row in _open(engine)] == ["P0"]


def test_a_gpu_running_hot_after_a_job_deadlocked_is_evidence_not_its_cause(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    _ingest_in_batches(engine, scenarios.job_wide_stall(clock.now()))
    clock.advance(240)
    hot = {"alertname": "GPUTemperatureHigh", "cluster": "c1", "Hostname": "r08-n04", "gpu": "6"}
    engine.ingest([Alert(hot, starts_at=clock.now())])
    (row,) = _open(engine)
    assert (row[2], row[3]["name"]) == ("job_stalled", "llm-70b") and row[4] == 257
    # One that took a rank away is the cause, whenever it fired (a node down waits for its `for:`).
    engine.ingest(
        [Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r08-n04"}, starts_at=clock.now())]
    )
    (row,) = _open(engine)
    assert (row[2], row[3]["name"]) == ("node_down", "r08-n04")


@pytest.mark.parametrize("xid", ["48", "95"])
def test_a_double_bit_ecc_xid_takes_its_gpu_out_and_stops_the_job_on_it(
    db: str, clock: FakeClock, xid: str
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert("r07-n01", 2, "GpuXidError", xid=xid)])
    ((incident, priority, kind, *_),) = _open(engine)
    assert (priority, kind) == ("P0", "ecc_dbe")
    assert "training job llm-70b stopped" in engine.store.get(incident).title


def test_unrelated_faults_on_two_gpus_of_one_node_stay_two_incidents(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert("r03-n02", 2, "GPUThermalThrottling")])
    clock.advance(90)
    engine.ingest([_gpu_alert("r03-n02", 6, "GpuMemoryLeak")])
    assert sorted((r[2], r[3]["index"]) for r in _open(engine)) == [("memory_leak", 6), ("thermal", 2)]
    engine.ingest([_gpu_alert("r03-n02", 5, "GPUThermalThrottling")])  # the same kind: the node's cooling
    assert sorted((r[2], r[3]["type"]) for r in _open(engine)) == [
        ("memory_leak", "gpu"),
        ("thermal", "node"),
    ]


@pytest.mark.parametrize("lost_first", [True, False], ids=["gpu-lost-first", "heat-first"])
def test_a_hot_gpu_beside_a_lost_gpu_of_its_node_is_its_own_incident(
    db: str, clock: FakeClock, lost_first: bool
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    alerts = [_gpu_alert("r03-n02", 3, "GPULost"), _gpu_alert("r03-n02", 0, "GPUTemperatureHigh")]
    for alert in alerts if lost_first else alerts[::-1]:
        engine.ingest([alert])
        clock.advance(60)
    found = sorted((r[2], r[3]["index"], r[4]) for r in _open(engine))
    assert found == [("gpu_lost", 3, 1), ("thermal", 0, 1)]
    engine.ingest([_gpu_alert("r03-n02", 3, "GPUTemperatureHigh")])  # the lost GPU's own heat: its incident
    found = sorted((r[2], r[3]["index"], r[4]) for r in _open(engine))
    assert found == [("gpu_lost", 3, 2), ("thermal", 0, 1)]


def test_a_node_down_takes_in_the_faults_of_its_gpus(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r03-n02"})])
    clock.advance(60)
    engine.ingest([_gpu_alert("r03-n02", 0, "GPUTemperatureHigh"), _gpu_alert("r03-n02", 4, "GpuMemoryLeak")])
    [(_, _, kind, target, count)] = _open(engine)
    assert (kind, target["type"], count) == ("node_down", "node", 3)


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"alertname": "X", "bad-label": "y"}, 'X {bad-label="y"}, location unknown'),
        ({"alertname": "GPUTemperatureHigh"}, "GPUTemperatureHigh, location unknown"),
        (
            {"alertname": "Y", "severity": "page", "e": "5", "d": "4", "c": "3", "b": "2", "a": "1"},
            'Y {a="1", b="2", c="3", d="4", ...}, location unknown',
        ),
    ],
    ids=["unknown-kind", "known-kind", "many-labels"],
)
def test_an_alert_that_says_nowhere_is_titled_by_its_name_and_labels(
    db: str, clock: FakeClock, labels: dict[str, str], expected: str
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([Alert(labels)])
    ((incident_id, *_),) = _open(engine)
    assert engine.store.get(incident_id).title == expected


def _service_on_unknown_racks(service: str, prefix: str, nodes: int) -> StaticInventory:
    """Cluster k: nodes of no known rack, a replica of ``service`` on GPU 0 of each of the first four."""
    listed = [NodeInfo(f"{prefix}{i}", "k", "?", 8) for i in range(1, nodes + 1)]
    ref = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", service, "k")
    units = tuple(frozenset({("k", f"{prefix}{i}", 0)}) for i in range(1, 5))
    return StaticInventory(listed, [WorkloadInfo(ref, units)], {"k": 0})


def test_outages_taking_every_replica_of_a_service_on_nodes_of_unknown_racks_are_one_p0(
    db: str, clock: FakeClock
) -> None:
    # Kubernetes nodes without rack labels, one replica of llm-serve on each.
    engine = _engine(db, clock, _service_on_unknown_racks("llm-serve", "gpu-node-", nodes=5))
    for i in range(1, 5):
        engine.ingest([Alert({"alertname": "KubeNodeNotReady", "cluster": "k", "node": f"gpu-node-{i}"})])
        clock.advance(20)
    ((incident, priority, *_),) = _open(engine)
    title = engine.store.get(incident).title
    assert priority == "P0" and title.startswith("cluster k partial outage: 4 nodes, 32 GPUs")
    assert "llm-serve 100% of replicas lost" in title
    # A node without a replica, down at the same time, is another fault.
    engine.ingest([Alert({"alertname": "KubeNodeNotReady", "cluster": "k", "node": "gpu-node-5"})])
    assert len(_open(engine)) == 2


def test_the_alert_that_pinpoints_a_straggler_gpu_keeps_the_priority_its_job_alert_gave(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([Alert({"alertname": "TrainingStepTimeHigh", "cluster": "c1", "slurm_job": "llm-70b"})])
    assert [r[1] for r in _open(engine)] == ["P2"]
    anomaly = {"model": "fleet", "for": "DCGM_FI_DEV_SM_CLOCK", "Hostname": "r07-n03", "gpu": "5"}
    engine.ingest([Alert({"alertname": "GpuwardenAnomaly", "cluster": "c1", **anomaly})])
    assert [r[1] for r in _open(engine)] == ["P2"]


def test_a_refire_with_a_new_burn_rate_reassesses_and_resolved_alerts_keep_no_measures(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory(), quiet_period_seconds=600)
    labels = {"alertname": "ChatSLOBurnRate", "cluster": "c1", "namespace": "serving", "service": "chat"}
    engine.ingest([Alert(labels, annotations={"burn_rate": "2"})])
    assert [r[1] for r in _open(engine)] == ["P2"]
    clock.advance(30)
    engine.ingest([Alert(labels, annotations={"burn_rate": "2"}, status=AlertStatus.RESOLVED)])
    assert engine._measures == {}  # kept for firing alerts only
    clock.advance(30)
    engine.ingest([Alert(labels, annotations={"burn_rate": "20"})])  # fires again, burning fast
    assert [r[1] for r in _open(engine)] == ["P1"]
    engine.ingest([Alert(labels, annotations={"burn_rate": "20"})])  # a plain repeat: still P1
    assert [r[1] for r in _open(engine)] == ["P1"]


def test_a_power_loss_and_a_node_down_in_another_rack_of_the_same_job_stay_two(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    alerts = scenarios.rack_failure(7, clock.now()) + scenarios.node_failure(8, 2, clock.now())
    _ingest_in_batches(engine, sorted(alerts, key=lambda a: a.fingerprint))
    assert sorted((r[2], r[3]["name"]) for r in _open(engine)) == [
        ("node_down", "r08-n02"),
        ("rack_down", "r07"),
    ]


def test_a_cluster_root_of_a_services_outages_does_not_take_in_unrelated_faults(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, _service_on_unknown_racks("chat", "n", nodes=9))
    for i in range(1, 5):
        engine.ingest([Alert({"alertname": "NodeDown", "cluster": "k", "node": f"n{i}"})])
    hot = {"alertname": "GPUTemperatureHigh", "cluster": "k", "gpu": "3"}
    engine.ingest([Alert({**hot, "node": "n2"})])  # on a node that is down: the outage's
    clock.advance(600)
    engine.ingest([Alert({**hot, "node": "n9"})])  # elsewhere, later: its own
    assert sorted((r[3]["type"], r[4]) for r in _open(engine)) == [("cluster", 5), ("gpu", 1)]


def test_what_alert_names_and_labels_say_is_read_as_they_mean() -> None:
    from alerting.faults import classify, is_outage  # noqa: PLC0415 - the rules, alone
    from alerting.priority import says_down  # noqa: PLC0415

    assert (
        classify({"alertname": "InstanceDown", "job": "kubelet", "instance": "n1:10250"})
        is FaultKind.NODE_DOWN
    )
    tor = {"alertname": "TargetDown", "job": "node-exporter", "instance": "n1:9100"}  # Prometheus' up == 0
    assert classify(tor) is FaultKind.NODE_DOWN
    exporter = {"alertname": "TargetDown", "job": "dcgm-exporter", "instance": "n1:9400"}
    assert classify(exporter) is FaultKind.EXPORTER_STALE
    # kube-prometheus' TargetDown is one alert per job, about no one target: not a node down.
    assert classify({"alertname": "TargetDown", "job": "node-exporter"}) is not FaultKind.NODE_DOWN
    assert (
        classify({"alertname": "InstanceDown", "job": "nodejs-api", "instance": "a:80"})
        is not FaultKind.NODE_DOWN
    )
    assert not says_down("chat_service_downstream_latency_high")
    assert says_down("chat_service_down") and says_down("InferenceServiceDown")
    exit_code = {"alertname": "JobFailed", "code": "79"}  # an exit code, not an XID
    assert not is_outage(classify(exit_code), exit_code)


def test_a_service_down_alert_scraped_by_its_own_service_monitor_is_still_the_service(
    db: str, clock: FakeClock
) -> None:
    # The Prometheus Operator names the job after the Service: job == service, and no pod or node.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    labels = {"alertname": "InferenceServiceDown", "cluster": "c1", "namespace": "search", "service": "rank"}
    engine.ingest([Alert({**labels, "job": "rank"})])
    assert [r[1] for r in _open(engine)] == ["P0"]


def test_a_rack_partly_down_takes_in_what_is_on_its_dead_nodes_not_a_hot_gpu_on_a_live_one(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    for node in ("r04-n01", "r04-n02"):
        engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": node})])
    engine.ingest([_gpu_alert("r04-n01", 2, "GPUTemperatureHigh")])  # on a dead node: the outage's
    engine.ingest([_gpu_alert("r04-n06", 1, "GPUTemperatureHigh")])  # a live node: its own
    assert sorted((r[3]["type"], r[4]) for r in _open(engine)) == [("gpu", 1), ("rack", 3)]


def test_changes_replayed_after_a_restart_reach_listeners_of_an_announced_incident(
    db: str, clock: FakeClock
) -> None:
    # serve replays its journal before the first tick: a change to an incident announced before the crash
    # used to fold into its announcement again, which the outbox dropped as a duplicate.
    first = _engine(db, clock, scenarios.fleet_inventory(), announce_delay_seconds=10)
    first.ingest([_gpu_alert("r02-n01", 3, "GPULost")])
    clock.advance(11)
    first.tick()
    engine = _engine(db, clock, scenarios.fleet_inventory(), announce_delay_seconds=10)  # restarted
    seen: list[ChangeKind] = []
    engine.subscribe(lambda c: seen.append(c.kind))
    clock.advance(5)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r02-n01"})])  # replayed
    # Announced again first (the outbox dedupes it; it may never have gone out), then the change.
    assert seen[0] is ChangeKind.OPENED and set(seen[1:]) & {ChangeKind.UPDATED, ChangeKind.PRIORITY_CHANGED}
    before = len(seen)
    engine.tick()
    assert len(seen) == before  # not announced a third time


def test_where_alerts_land_does_not_depend_on_how_they_were_batched(tmp_path: Path) -> None:
    node_down = Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r02-n01"})
    hot = [_gpu_alert("r02-n01", 0, "GpuTemperatureHigh"), _gpu_alert("r02-n01", 1, "GpuTemperatureHigh")]
    later = [
        _gpu_alert("r02-n02", 0, "GpuTemperatureHigh"),
        _gpu_alert("r02-n05", 3, "GpuXidError", xid="79"),
    ]
    outcomes = []
    for batches in ([[node_down, *hot, *later]], [[node_down, *hot], later]):
        path = str(tmp_path / f"b{len(batches)}.db")
        migrated_sqlite(Path(path)).dispose()
        engine = _engine(path, FakeClock(), scenarios.fleet_inventory())
        for batch in batches:
            engine.ingest(batch)
        outcomes.append(sorted((r[2], r[4]) for r in _open(engine)))
    assert outcomes[0] == outcomes[1]
    assert ("gpu_lost", 1) in outcomes[0]  # the lost GPU on another node is its own fault


def test_an_outage_inside_a_rack_that_was_already_running_hot_stays_in_the_racks_thermal_incident(
    db: str, clock: FakeClock
) -> None:
    # A cooling failure: GPUs on every node of r05 run hot, then one node shuts down, then more GPUs heat up.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert(f"r05-n0{n}", 0, "GPUTemperatureHigh") for n in range(1, 5)])
    clock.advance(60)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r05-n02"})])
    clock.advance(60)
    engine.ingest([_gpu_alert(f"r05-n0{n}", 1, "GPUTemperatureHigh") for n in range(5, 9)])
    [(_, _, kind, target, count)] = _open(engine)
    assert (kind, target["type"], target["name"], count) == ("thermal", "rack", "r05", 9)


def test_a_gpu_that_ran_hot_then_fell_off_the_bus_is_a_lost_gpu(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert("r05-n01", 3, "GPUTemperatureHigh")])
    clock.advance(60)
    engine.ingest([_gpu_alert("r05-n01", 3, "GPULost")])
    [(_, _, kind, target, count)] = _open(engine)
    assert (kind, target["type"], count) == ("gpu_lost", "gpu", 2)


HOT = "GPUTemperatureHigh"


@pytest.mark.parametrize(
    ("hot", "expected"),
    [
        ((("r05-n01", HOT), ("r05-n04", HOT)), ["gpu", "gpu"]),
        ((("r05-n01", HOT), ("r05-n04", HOT), ("r05-n07", HOT)), ["rack"]),
        ((("r05-n01", HOT), ("r06-n04", HOT), ("r07-n07", HOT)), ["gpu"] * 3),
        ((("r05-n01", HOT), ("r05-n04", "GPUMemoryLeak"), ("r05-n07", HOT)), ["gpu"] * 3),
        # The same application error on three nodes is not the rack's: no cooling or power in it.
        ((("r05-n01", "GPUXid"), ("r05-n04", "GPUXid"), ("r05-n07", "GPUXid")), ["gpu"] * 3),
    ],
    ids=["two-nodes", "three-nodes-one-rack", "three-racks", "two-signals", "xids"],
)
def test_one_signal_on_single_gpus_of_three_nodes_of_a_rack_is_the_racks_fault(
    db: str, clock: FakeClock, hot: tuple[tuple[str, str], ...], expected: list[str]
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    for node, name in hot:
        engine.ingest([_gpu_alert(node, 2, name)])
        clock.advance(40)
    engine.tick()
    assert sorted(r[3]["type"] for r in _open(engine)) == expected


def test_a_rack_running_hot_in_one_rule_evaluation_is_announced_once(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory(), announce_delay_seconds=30)
    opened: list[str] = []
    engine.subscribe(lambda c: opened.append(c.incident.title) if c.kind is ChangeKind.OPENED else None)
    engine.ingest([_gpu_alert(f"r03-n0{n}", 5, "GPUTemperatureHigh") for n in (2, 4, 6, 8)])
    clock.advance(30)
    engine.tick()
    assert opened == ["rack r03 thermal"]


def test_a_gpu_hot_since_long_before_the_window_does_not_count_towards_a_racks_spread(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory(), correlation_window_seconds=300)
    engine.ingest([_gpu_alert("r05-n01", 2, "GPUTemperatureHigh")])
    clock.advance(3600)
    engine.ingest([_gpu_alert("r05-n04", 2, HOT), _gpu_alert("r05-n07", 2, HOT)])
    assert sorted(r[3]["type"] for r in _open(engine)) == ["gpu"] * 3


def test_a_flapping_outage_keeps_its_priority_and_tells_nobody_of_each_flap(
    db: str, clock: FakeClock
) -> None:
    # An XID 79 on a rank of llm-70b (no spare GPUs): P0 while it fires, and while it flaps.
    engine = _engine(db, clock, scenarios.fleet_inventory(), flap_start_transitions=4)
    changes: list[tuple[str, str]] = []
    engine.subscribe(lambda c: changes.append((c.kind.value, c.incident.priority.value)))
    lost = _gpu_alert("r07-n01", 2, "GPUXid", xid="79")
    told_when_it_began_flapping = None
    for cycle in range(12):
        clock.advance(5)
        engine.ingest([Alert(lost.labels, status=AlertStatus.RESOLVED if cycle % 2 else AlertStatus.FIRING)])
        row = engine.store.alert(lost.fingerprint)
        assert row is not None
        if row.flapping and told_when_it_began_flapping is None:
            told_when_it_began_flapping = len(changes)
    assert told_when_it_began_flapping is not None and cycle > 6
    assert changes[told_when_it_began_flapping:] == []  # no priority swing, no message edit per flap
    ((_, priority, *_),) = _open(engine)
    assert priority == "P0"


def test_a_transaction_that_fails_while_the_store_is_down_leaves_no_half_rebuilt_view(
    db: str, clock: FakeClock
) -> None:
    # PostgreSQL restarting: the transaction fails, and so does the rebuild of the open incidents after it.
    engine = _engine(db, clock, quiet_period_seconds=30)
    down = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    engine.ingest([Alert(down), Alert({**down, "node": "x2"})])
    sessions, failing = engine._sessions, False

    def refused(*args: object, **kwargs: object) -> object:
        raise OSError("connection refused")

    def store(*args: object, **kwargs: object) -> object:
        session = sessions(*args, **kwargs)
        if failing:  # the session opens; its first statement fails, as with a database that went away
            for name in ("scalars", "scalar", "execute", "get", "connection", "flush"):
                setattr(session, name, refused)
        return session

    engine._sessions = store  # type: ignore[assignment]
    later = [Alert(down, status=AlertStatus.RESOLVED), _gpu_alert("x2", 1, "GPUXid", xid="79")]
    failing = True
    with pytest.raises(OSError):
        engine.ingest(later)
    with pytest.raises(OSError):
        engine.tick()
    failing = False
    engine.ingest(later)  # the applier's retry once the store is back
    assert sorted(n for *_, n in _open(engine)) == [1, 2]  # the XID joined x2's incident
    clock.advance(31)
    engine.tick()
    assert [n for *_, n in _open(engine)] == [2]  # x1's incident resolved after its quiet period


def test_replicas_of_one_service_lost_in_two_incidents_count_together_for_both(
    db: str, clock: FakeClock
) -> None:
    # Ten replicas, one GPU each, on five nodes of one rack; a GPU falls off one node, two off another.
    engine, _ = _svc10(db, clock)

    def lost(node: str, gpu: int, status: AlertStatus = AlertStatus.FIRING) -> Alert:
        labels = {"alertname": "GPUXid", "cluster": "k", "Hostname": node, "gpu": str(gpu), "xid": "79"}
        return Alert(labels, status=status)

    engine.ingest([lost("a01", 0)])
    assert [r[1] for r in _open(engine)] == ["P2"]  # 10%: one redundant replica
    clock.advance(1)
    engine.ingest([lost("a02", 0), lost("a02", 1)])
    incidents = {_node_of(r[3]): r[1] for r in _open(engine)}
    assert incidents == {"a01": "P1", "a02": "P1"}  # 30% of svc10 lost: two faults, one loss
    first = next(r[0] for r in _open(engine) if _node_of(r[3]) == "a01")
    reason = next(str(r.impact["priority_reason"]) for r, _ in engine.store.list_rows() if r.id == first)
    assert "counting what other open incidents took" in reason
    title = engine.store.get(first).title  # what this fault took, and what the service lost in all
    assert title.endswith("inference service svc10 10% of replicas lost (more in other incidents)")
    clock.advance(1)
    engine.ingest([lost("a02", 0, AlertStatus.RESOLVED), lost("a02", 1, AlertStatus.RESOLVED)])
    assert {_node_of(r[3]): r[1] for r in _open(engine)}["a01"] == "P2"  # given back: 10% again


def test_a_service_down_across_two_incidents_says_so_in_the_reason_as_the_title_does(
    db: str, clock: FakeClock
) -> None:
    """Slack walk-through: a title said "svc2 50% of replicas lost (more in other incidents)" while its
    priority's reason said "inference service completely unavailable", as if this fault alone took it."""
    nodes = [NodeInfo(f"a0{n}", "k", f"r{n}", 1) for n in range(1, 3)]
    svc = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "prod", "svc2", "k")
    units = tuple(frozenset({("k", f"a0{n}", 0)}) for n in range(1, 3))
    engine = _engine(db, clock, StaticInventory(nodes, [WorkloadInfo(svc, units)]))
    engine.ingest([_gpu_alert("a01", 0, "GPUXid", xid="79", cluster="k")])
    clock.advance(1)
    engine.ingest([_gpu_alert("a02", 0, "GPUXid", xid="79", cluster="k")])
    rows = [r for r, _ in engine.store.list_rows()]
    assert [r.priority for r in rows] == ["P0", "P0"]  # the service is down: both faults took it
    for row in rows:
        assert row.title.endswith("inference service svc2 50% of replicas lost (more in other incidents)")
        assert row.impact["priority_reason"] == (
            "inference service svc2 completely unavailable: 50% of its replicas lost here,"
            " the rest in other open incidents"
        )


def _node_of(target: dict[str, object]) -> str:
    return str(target.get("name") if target["type"] == "node" else target["node"])


def test_a_storm_of_single_gpu_faults_on_one_service_tells_a_bounded_number_of_changes(
    db: str, clock: FakeClock
) -> None:
    # A replica on every node; one GPU falls off each node in turn: 40 incidents, each its own fault.
    nodes = [NodeInfo(f"b{n:02d}", "k", f"r{n % 4}", 1) for n in range(40)]
    svc = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "prod", "wide", "k")
    units = tuple(frozenset({("k", node.name, 0)}) for node in nodes)
    engine = _engine(db, clock, StaticInventory(nodes, [WorkloadInfo(svc, units)]))
    changes: list[str] = []
    engine.subscribe(lambda c: changes.append(c.incident.id))
    for node in nodes:
        clock.advance(1)
        labels = {"alertname": "GPUXid", "cluster": "k", "Hostname": node.name, "gpu": "0", "xid": "79"}
        engine.ingest([Alert(labels)])
    assert len(_open(engine)) == 40
    # Their priorities move when the service's loss crosses a tier (some, a quarter, all), not at each fault.
    assert len(changes) <= 3 * 40
    assert {r[1] for r in _open(engine)} == {"P0"}  # every replica lost, across the incidents


def _svc10(db: str, clock: FakeClock) -> tuple[IncidentEngine, StaticInventory]:
    """Service svc10: ten replicas, one GPU each, on the two GPUs of five nodes of rack r1."""
    nodes = [NodeInfo(f"a0{n}", "k", "r1", 2) for n in range(1, 6)]
    svc = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "prod", "svc10", "k")
    units = tuple(frozenset({("k", f"a0{n}", g)}) for n in range(1, 6) for g in range(2))
    inventory = StaticInventory(nodes, [WorkloadInfo(svc, units)])
    return _engine(db, clock, inventory), inventory


def test_a_services_loss_across_incidents_is_the_same_after_a_restart(db: str, clock: FakeClock) -> None:
    engine, inventory = _svc10(db, clock)
    for node, gpus in (("a01", (0,)), ("a02", (0, 1))):
        engine.ingest([_gpu_alert(node, g, "GPUXid", xid="79", cluster="k") for g in gpus])
    assert sorted(r[1] for r in _open(engine)) == ["P1", "P1"]
    restarted, _ = _svc10(db, clock)
    restarted.replace_inventory(inventory)  # the first refresh assesses every open incident again
    assert sorted(r[1] for r in _open(restarted)) == ["P1", "P1"]


def test_a_flapping_outage_that_settles_resolved_gives_back_what_it_took(db: str, clock: FakeClock) -> None:
    engine = _engine(
        db, clock, scenarios.fleet_inventory(), flap_start_transitions=4, flap_window_seconds=120
    )
    lost = _gpu_alert("r07-n01", 2, "GPUXid", xid="79")
    engine.ingest([_gpu_alert("r07-n01", 2, "GPUTemperatureHigh")])  # fires throughout
    for cycle in range(8):
        clock.advance(5)
        engine.ingest([Alert(lost.labels, status=AlertStatus.RESOLVED if cycle % 2 else AlertStatus.FIRING)])
    ((_, priority, *_),) = _open(engine)
    assert priority == "P0"  # while it flaps: the rank of llm-70b on it counts as stopped
    for _ in range(10):  # it stays resolved: the flap window empties and the flag clears
        clock.advance(30)
        engine.tick()
    assert engine.store.alert(lost.fingerprint).flapping is False  # type: ignore[union-attr]
    ((_, priority, *_),) = _open(engine)
    assert priority == "P3"  # only the hot GPU is left


def test_a_hot_gpu_in_the_next_rack_is_its_own_fault_not_the_racks_heat_rolled_up_to_the_cluster(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert(f"r05-n0{n}", 1, HOT) for n in (1, 2, 3)])
    clock.advance(30)
    engine.ingest([_gpu_alert("r06-n01", 1, HOT)])
    assert sorted(r[3]["type"] for r in _open(engine)) == ["gpu", "rack"]


def test_a_node_down_before_its_rack_ran_hot_stays_its_own_incident(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r05-n04"})])
    clock.advance(60)
    engine.ingest([_gpu_alert(f"r05-n0{n}", 1, HOT) for n in (1, 2, 3)])
    assert sorted((r[2], r[3]["type"]) for r in _open(engine)) == [("node_down", "node"), ("thermal", "rack")]


def test_nodes_down_after_a_lost_gpu_in_their_rack_root_the_partial_outage_as_nodes_down(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert("r03-n01", 0, "GPULost")])
    for n in (2, 3):
        clock.advance(5)
        engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"r03-n0{n}"})])
    ((incident, _, kind, target, count),) = _open(engine)
    assert (kind, target["type"], count) == ("node_down", "rack", 3)
    kinds = [
        e.data.get("kind") for e in engine.store.get(incident).timeline if e.kind == "root_cause_changed"
    ]
    assert "gpu_lost" not in kinds


def test_a_node_back_up_while_its_lost_gpu_still_fires_stays_the_nodes_incident(
    db: str, clock: FakeClock
) -> None:
    # What happened was the node's fault: it does not narrow to the GPU left, which the impact still shows.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    down = Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r03-n04"})
    engine.ingest([down, _gpu_alert("r03-n04", 5, "GPULost")])
    clock.advance(60)
    engine.ingest([Alert(down.labels, status=AlertStatus.RESOLVED)])  # the node is back; the GPU is not
    ((incident, *_),) = _open(engine)
    shown = engine.store.get(incident)
    assert shown.title == "node r03-n04 was down: 1 node, 1 GPU"
    assert (shown.root_cause.kind.value, str(shown.root_cause.target)) == ("node_down", "node/r03-n04")


def test_a_rack_that_lost_power_and_has_one_node_down_again_keeps_the_racks_root_partly_back(
    db: str, clock: FakeClock
) -> None:
    # The rack's own node going down again within the reopen window is its fault partly back, as the open
    # incident said while that node stayed down; it was retitled "node r04-n03 is down" (the rack's record
    # and postmortem then named the node).
    engine = _engine(db, clock, scenarios.fleet_inventory(), quiet_period_seconds=30)
    downs = [Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"r04-n0{n}"}) for n in range(1, 9)]
    engine.ingest(downs)
    ((incident, *_),) = _open(engine)
    assert engine.store.get(incident).title.startswith("rack r04 lost power: 8 nodes")
    clock.advance(60)
    engine.ingest([Alert(a.labels, status=AlertStatus.RESOLVED) for a in downs])
    clock.advance(31)
    engine.tick()  # resolved
    clock.advance(60)
    engine.ingest([downs[2]])  # one node down again, within the reopen window: the incident reopens
    again = engine.store.get(incident)
    assert again.title.startswith("rack r04 lost power, partly back: 1 node, 8 GPUs")
    assert (again.root_cause.kind.value, str(again.root_cause.target)) == ("rack_down", "rack/r04")
    assert not [e.message for e in again.timeline if e.message.startswith("root cause is now node")]
    hot = Alert({"alertname": "GpuTemperatureHigh", "cluster": "c1", "Hostname": "r04-n03", "gpu": "2"})
    engine.ingest([hot])  # on the node while it is down: the rack's root explains it, it joins
    assert [i for i, *_ in _open(engine)] == [incident]
    engine.ingest([Alert(a.labels, status=AlertStatus.RESOLVED) for a in (downs[2], hot)])
    clock.advance(31)
    engine.tick()
    assert engine.store.get(incident).state is IncidentState.RESOLVED
    clock.advance(60)
    engine.ingest([hot])  # reopens the incident it joined, but is no outage of the rack: the root moves
    assert engine.store.get(incident).root_cause.kind.value == "thermal"


def test_a_resolution_whose_commit_answer_was_lost_is_not_resolved_again(
    db: str, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(db, clock, quiet_period_seconds=60)
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    engine.ingest([Alert(labels)])
    (inc,) = _open(engine)
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])
    clock.advance(61)
    closed = engine._closed

    def lost_answer(incident_ids: object) -> None:
        monkeypatch.setattr(engine, "_closed", closed)
        raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(engine, "_closed", lost_answer)  # the resolving COMMIT went through, its answer lost
    with pytest.raises(OperationalError):
        engine.tick()
    resolved_at = engine.store.get(inc[0]).resolved_at
    clock.advance(1)
    engine.tick()
    incident = engine.store.get(inc[0])
    assert [e.kind for e in incident.timeline].count("resolved") == 1
    assert incident.state is IncidentState.RESOLVED and incident.resolved_at == resolved_at


def test_xids_a_rack_outage_took_in_do_not_pull_other_racks_xids_into_it(db: str, clock: FakeClock) -> None:
    # A soak saw rack-down incidents take XIDs of other racks: the XIDs on two of its nodes looked like a
    # driver rollout spreading. They are the outage's evidence; a fault elsewhere is its own.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest(scenarios.rack_failure(7, clock.now()))
    engine.ingest([_gpu_alert(f"r07-n0{n}", 2, xid="31") for n in (1, 2)])
    clock.advance(30)
    engine.ingest([_gpu_alert("r05-n03", 4, xid="31")])
    opened = sorted((r[2], r[3].get("name") or r[3].get("node")) for r in _open(engine))
    assert opened == [("rack_down", "r07"), ("xid", "r05-n03")], opened


def _roots(engine: IncidentEngine) -> list[tuple[str, str, object, int]]:
    return sorted((r[2], r[3]["type"], r[3].get("name") or r[3].get("node"), r[4]) for r in _open(engine))


@pytest.mark.parametrize(
    ("xid", "expected"),
    [
        ("48", [("ecc_dbe", "gpu", "r05-n03", 1), ("xid", "cluster", "c1", 128)]),
        ("31", [("xid", "cluster", "c1", 128), ("xid", "gpu", "r05-n03", 1)]),
        ("119", [("xid", "cluster", "c1", 129)]),
    ],
    ids=["dbe-is-another-fault", "another-code-is-another-fault", "the-same-code-spreads"],
)
@pytest.mark.parametrize("first", [True, False], ids=["before-the-rollout", "after-the-rollout"])
def test_an_xid_of_another_code_stays_out_of_a_driver_rollouts_cluster_incident(
    db: str, clock: FakeClock, xid: str, expected: list[tuple[str, str, object, int]], first: bool
) -> None:
    # Both alerts are named GPUXid: the roll-up compared names, so a DBE on r05 joined the rollout's
    # "XID 119" incident of racks r02 and r03 (and, being earliest, became its root cause).
    engine = _engine(db, clock, scenarios.fleet_inventory())
    rollout = scenarios.driver_rollout_xids((2, 3), clock.now(), stalled_job=None)
    rollout.sort(key=lambda a: a.starts_at or clock.now())
    other = _gpu_alert("r05-n03", 4, xid=xid)
    if first:
        engine.ingest([other])
        clock.advance(5)
    _ingest_in_batches(engine, rollout)
    if not first:
        clock.advance(5)
        engine.ingest([other])
    assert _roots(engine) == expected


@pytest.mark.parametrize(
    ("xid", "expected"),
    [
        ("48", [("ecc_dbe", "gpu", "r02-n07", 1), ("xid", "rack", "r02", 32)]),
        ("79", [("gpu_lost", "gpu", "r02-n07", 1), ("xid", "rack", "r02", 32)]),
        ("31", [("xid", "gpu", "r02-n07", 1), ("xid", "rack", "r02", 32)]),
        ("119", [("xid", "rack", "r02", 33)]),
    ],
    ids=["dbe", "fell-off-the-bus", "another-code", "the-same-code"],
)
@pytest.mark.parametrize("first", [True, False], ids=["before-the-rollout", "after-the-rollout"])
def test_a_rack_a_driver_rollout_reached_does_not_explain_another_gpu_fault_in_it(
    db: str, clock: FakeClock, xid: str, expected: list[tuple[str, str, object, int]], first: bool
) -> None:
    # XID 119 spreading over four nodes of r02 roots at the rack without taking the rack down: another
    # GPU's outage there (a DBE, a GPU off the bus) is not the rack's, as it would be beside dead nodes.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    if first:
        engine.ingest([_gpu_alert("r02-n07", 4, xid=xid)])
        clock.advance(5)
    for n in range(1, 5):
        engine.ingest([_gpu_alert(f"r02-n0{n}", gpu, xid="119") for gpu in range(8)])
        clock.advance(15)
    if not first:
        engine.ingest([_gpu_alert("r02-n07", 4, xid=xid)])
    assert _roots(engine) == expected


_NODE_R02_N03 = {"type": "node", "cluster": "c1", "rack": "r02", "name": "r02-n03"}
_JOB = {
    "type": "workload",
    "kind": "training_job",
    "namespace": "research",
    "name": "llm-70b",
    "cluster": "c1",
}


@pytest.mark.parametrize(
    ("bad", "target"),
    [
        ({"gpu": "9" * 20}, _NODE_R02_N03),  # past SQLite's 64-bit integers
        ({"gpu": "\u00b3"}, _NODE_R02_N03),  # a superscript: str.isdigit says digit, int() says no
        ({"xid": "\u2077\u2079"}, _NODE_R02_N03),
        ({"xid": "9" * 5000}, _NODE_R02_N03),  # past Python's int-from-string digit limit
        ({"alertname": "TrainingJobStalled", "rank": "\u2079", "training_job": "llm-70b"}, _JOB),
    ],
    ids=["huge-gpu", "superscript-gpu", "superscript-xid", "5000-digit-xid", "superscript-rank"],
)
def test_an_alert_with_an_unparsable_numeric_label_is_stored_with_its_labels_and_its_batch_applies(
    db: str, clock: FakeClock, bad: dict[str, str], target: dict[str, str]
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    poison = Alert({"alertname": "GpuXid", "cluster": "c1", "node": "r02-n03", **bad})
    down = Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r05-n01"})
    engine.ingest([poison, down])
    stored = engine.store.alert(poison.fingerprint)
    assert stored is not None and stored.labels == poison.labels
    assert engine.store.alert(down.fingerprint) is not None
    targets = [target for _, _, _, target, _ in _open(engine)]
    assert {"type": "node", "cluster": "c1", "rack": "r05", "name": "r05-n01"} in targets
    # the bad label is ignored: no GPU index, no XID code, no rank; the alert points at what else it names
    assert target in targets


def test_the_engine_sends_a_few_in_list_statements_whatever_the_batch_sizes(
    db: str, clock: FakeClock
) -> None:
    """A statement per IN-list length, kept prepared by every pooled connection (as big as its list): the
    ingest's alerts of a POST, the tick's incidents, the changes handed on, at every length from 1 up."""
    engine = _engine(db, clock, quiet_period_seconds=30)
    engine.subscribe(lambda change: None)  # changes are stored, handed on, then deleted by their ids
    labels = [{"alertname": "NodeDown", "cluster": "c1", "node": f"n{k:02d}"} for k in range(40)]
    engine.ingest([Alert(one) for one in labels])
    texts: set[str] = set()

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        if " IN (" in statement:
            texts.add(statement)

    event.listen(engine.store.engine, "before_cursor_execute", record)
    for k in range(1, len(labels) + 1):  # k alerts resolve, then fire again: k known alerts per POST
        engine.ingest([Alert(one, status=AlertStatus.RESOLVED) for one in labels[:k]])
        clock.advance(1)
        engine.tick()  # k incidents quiet: k rows read
        engine.ingest([Alert(one) for one in labels[:k]])
    assert len(texts) <= 4 * 4, sorted(texts)  # a few query sites, each at most IN_LIST_SIZES' lengths


def test_the_announcements_of_incidents_whose_delay_passed_are_stored_in_one_statement(
    db: str, clock: FakeClock
) -> None:
    # An UPDATE stamps them all; the read of those it left (opened in the instant they were announced)
    # and an UPDATE per one of them came after it at every announcement.
    engine = _engine(db, clock, announce_delay_seconds=10)
    engine.subscribe(lambda change: None)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"n{k}"}) for k in range(3)])
    stamping: list[str] = []

    def record(conn: object, cursor: object, statement: str, *rest: object) -> None:
        words = " ".join(statement.split())
        if words.startswith(
            ("UPDATE incidents SET announced_at", "SELECT incidents.id, incidents.opened_at FROM")
        ):
            stamping.append(words.split()[0])

    event.listen(engine.store.engine, "before_cursor_execute", record)
    clock.advance(10)
    engine.tick()
    assert stamping == ["UPDATE"]
    assert [r.announced_at for r, _ in engine.store.list_rows()] == [clock.now()] * 3


def test_an_incident_opened_by_one_post_states_its_priority_once_when_nothing_about_it_changed(
    db: str, clock: FakeClock
) -> None:
    # A rack's storm in one POST: the rack's incident is recomputed after it absorbs the nodes' and GPUs'
    # incidents, with the same priority for the same reason; its timeline (incidents show, the postmortem)
    # said "priority P0: training job fully stopped ..." twice at one instant.
    engine = _rack_down(db, clock)
    ((incident_id, *_),) = _open(engine)
    said = [e.message for e in engine.store.get(incident_id).timeline if e.kind == "priority"]
    assert said == ["priority P0: training job fully stopped with no spare capacity"]


def test_a_reply_telling_an_alert_joined_also_says_the_same_post_moved_it_on(
    db: str, clock: FakeClock
) -> None:
    # A dead rack has stopped training job llm-70b; an NVSwitch then fails on r08-n03, where the job's
    # ranks stall too. A stalled rank joins the rack's incident first, and the same POST moves it to the
    # NVLink incident, which holds its GPU: the rack's thread read "alert TrainingJobStalled (Slurm job
    # llm-70b) firing" and nothing of the move, an alert its incident no longer has.
    engine = _rack_down(db, clock)
    ((rack_id, *_),) = _open(engine)
    heard: list[IncidentChange] = []
    engine.subscribe(heard.append)
    clock.advance(30)
    engine.ingest(scenarios.nvlink_switch_failure(8, 3, clock.now()))
    moved = [e for e in engine.store.get(rack_id).timeline if e.kind == "alerts_moved"]
    assert moved, "the scenario no longer moves a stalled rank: the test checks nothing"
    told = [c for c in heard if c.incident.id == rack_id]
    assert told and all(any(m.message in c.also for m in moved) for c in told), [
        (c.event.message, c.also) for c in told
    ]


def test_stalled_ranks_moved_together_to_one_incident_are_one_timeline_entry_and_one_also_line(
    db: str, clock: FakeClock
) -> None:
    # A dead rack's incident holds llm-70b's stalled ranks; a driver rollout then reaches the job's racks and
    # the ranks whose GPUs it holds move to the rollout's incident, one POST: each rank was its own
    # "1 stalled rank alert moved to inc-…" on both timelines and its own "• also:" line in Slack's reply
    # (88 identical lines).
    engine = _rack_down(db, clock)
    heard: list[IncidentChange] = []
    engine.subscribe(heard.append)
    clock.advance(30)
    engine.ingest(scenarios.driver_rollout_xids((7, 8), clock.now()))
    moves: dict[tuple[str, str], int] = {}
    for r, _ in engine.store.list_rows(include_merged=True):
        for e in engine.store.get(r.id).timeline:
            if e.kind == "alerts_moved":
                key = (r.id, e.message.split(" ", 1)[1])  # what moved, between which two, why
                moves[key] = moves.get(key, 0) + 1
    assert moves, "the scenario no longer moves a stalled rank: the test checks nothing"
    assert set(moves.values()) == {1}, moves
    for c in heard:
        assert len(set(c.also)) == len(c.also), c.also


def test_a_root_cause_that_moves_several_times_in_one_post_is_told_once_where_it_ended(
    db: str, clock: FakeClock
) -> None:
    # A dead rack's incident, resolved; an NVSwitch fails on r08-n03; then a driver rollout's XID 119 reaches
    # both of llm-70b's racks in one POST. The rack's incident reopens and its root cause moves three times
    # as the POST's alerts are grouped: three replies at one instant, two of them already untrue ("root cause
    # is now XID on gpu r07-n08/0", "... job stalled on training job llm-70b", "... XID on cluster c1").
    engine = _engine(db, clock, scenarios.fleet_inventory(), quiet_period_seconds=20)
    storm = scenarios.rack_failure(7, clock.now())
    engine.ingest(storm)
    clock.advance(60)
    engine.ingest([Alert(a.labels, starts_at=a.starts_at, ends_at=clock.now()) for a in storm])
    clock.advance(60)
    engine.tick()
    clock.advance(60)
    engine.ingest(scenarios.nvlink_switch_failure(8, 3, clock.now()))
    clock.advance(60)
    heard: list[IncidentChange] = []
    engine.subscribe(heard.append)
    engine.ingest(scenarios.driver_rollout_xids((7, 8), clock.now() - timedelta(seconds=100)))
    moved = [c for c in heard if c.event.kind == "root_cause_changed"]
    assert [c.event.message for c in moved] == ["root cause is now XID on cluster c1"]
    (incident_id,) = {c.incident.id for c in moved}
    assert _open(engine)[0][0] == incident_id and _open(engine)[0][2] == "xid"
    said = [e.message for e in engine.store.get(incident_id).timeline if e.kind == "root_cause_changed"]
    assert said[-1] == "root cause is now XID on cluster c1" and len(said) == len(set(said))

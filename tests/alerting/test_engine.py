"""The incident engine's outages: nodes and racks down, what they take in and where they root; storms
in any order or batching, and a restart in the middle of one."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path

import pytest

from alerting import scenarios
from alerting.engine import IncidentEngine
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import (
    Alert,
    AlertStatus,
    FaultKind,
    IncidentState,
    NodeRef,
    RackRef,
    WorkloadKind,
    WorkloadRef,
)
from tests.alerting.incident_engines import (
    _engine,
    _gpu_alert,
    _ingest_in_batches,
    _open,
    _service_on_unknown_racks,
)
from tests.migrated_store import migrated_sqlite


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


def test_a_rack_whose_gpus_alert_before_its_nodes_go_down_is_one_incident(db: str, clock: FakeClock) -> None:
    # Each node's GPUs lost first (their own incident per node), then the nodes: one rack incident.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    for n in range(1, 9):
        engine.ingest([_gpu_alert(f"r06-n0{n}", 0, "GPULost")])
    for n in range(1, 9):
        engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"r06-n0{n}"})])
    ((_, priority, kind, target, count),) = _open(engine)
    assert (priority, kind, target["name"], count) == ("P2", "rack_down", "r06", 16)


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


def test_a_node_down_takes_in_the_faults_of_its_gpus(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r03-n02"})])
    clock.advance(60)
    engine.ingest([_gpu_alert("r03-n02", 0, "GPUTemperatureHigh"), _gpu_alert("r03-n02", 4, "GpuMemoryLeak")])
    [(_, _, kind, target, count)] = _open(engine)
    assert (kind, target["type"], count) == ("node_down", "node", 3)


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


def test_a_rack_partly_down_takes_in_what_is_on_its_dead_nodes_not_a_hot_gpu_on_a_live_one(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    for node in ("r04-n01", "r04-n02"):
        engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": node})])
    engine.ingest([_gpu_alert("r04-n01", 2, "GPUTemperatureHigh")])  # on a dead node: the outage's
    engine.ingest([_gpu_alert("r04-n06", 1, "GPUTemperatureHigh")])  # a live node: its own
    assert sorted((r[3]["type"], r[4]) for r in _open(engine)) == [("gpu", 1), ("rack", 3)]


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


def test_a_node_whose_every_gpu_is_lost_is_down_not_was_down_before_its_node_down_fires(
    db: str, clock: FakeClock
) -> None:
    # The GPU exporter says every GPU fell off the bus before node_exporter's NodeDown comes (or it never
    # does): the node is the fault and it is down now, not back up ("was down") with its GPUs still lost.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert("r03-n04", g, "GPULost") for g in range(8)])
    ((incident, *_),) = _open(engine)
    shown = engine.store.get(incident)
    assert (shown.root_cause.kind.value, str(shown.root_cause.target)) == ("node_down", "node/r03-n04")
    assert shown.title.startswith("node r03-n04 is down: 1 node, 8 GPUs"), shown.title
    clock.advance(30)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "r03-n04"})])
    assert engine.store.get(incident).title == shown.title  # no retitle: nothing changed
    assert not [e for e in engine.store.get(incident).timeline if e.kind == "retitled"]


def test_a_rack_whose_last_node_lost_every_gpu_while_the_others_went_down_lost_power(
    db: str, clock: FakeClock
) -> None:
    # Every node of r03 is down: seven by NodeDown, the last by every GPU lost (its GPU exporter's alerts
    # came first, or its node_exporter's NodeDown never did). The rack lost power, not a "partial outage"
    # of all its nodes.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    down = [Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"r03-n0{n}"}) for n in range(1, 8)]
    engine.ingest([*down, *(_gpu_alert("r03-n08", g, "GPULost") for g in range(8))])
    ((incident, *_),) = _open(engine)
    shown = engine.store.get(incident)
    assert (shown.root_cause.kind.value, str(shown.root_cause.target)) == ("rack_down", "rack/r03")
    assert shown.title.startswith("rack r03 lost power: 8 nodes, 64 GPUs"), shown.title


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


def test_an_engine_no_longer_used_is_freed_with_what_it_holds(tmp_path: Path) -> None:
    # Its commit hook held the engine, and SQLAlchemy keeps that hook as long as the engine's session class,
    # which the engine holds: every engine a process made stayed, with its open incidents (5 GB in a fuzz of
    # 4,250 storms, two engines each).
    sql = migrated_sqlite(tmp_path / "freed.db")
    clock = FakeClock(1_000_000.0)
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), None)
    engine.ingest([_gpu_alert("node-01", 0)])
    gone = weakref.ref(engine)
    del engine
    gc.collect()
    sql.dispose()
    assert gone() is None

"""The incident engine's roll-ups of GPU faults: one node's, one rack's or one cluster's, or apart on their
own GPUs (anomalies, XIDs, driver rollouts, racks and clusters the inventory does not know)."""

from __future__ import annotations

import pytest

from alerting import scenarios
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, WorkloadKind, WorkloadRef
from tests.alerting.incident_engines import _engine, _gpu_alert, _ingest_in_batches, _open


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


def test_single_gpus_lost_on_two_nodes_of_a_rack_minutes_apart_are_two_faults(
    db: str, clock: FakeClock
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert("r05-n01", 2, "GpuXidError", xid="79")])
    clock.advance(180)
    engine.ingest([_gpu_alert("r05-n06", 4, "GpuXidError", xid="79")])
    assert sorted(r[3]["node"] for r in _open(engine)) == ["r05-n01", "r05-n06"]


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

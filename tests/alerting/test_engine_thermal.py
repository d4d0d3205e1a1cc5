"""The incident engine and GPUs running hot: when heat is a GPU's, a node's or a rack's fault, and what an
outage or a lost GPU among it makes of it."""

from __future__ import annotations

import pytest

from alerting import scenarios
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert
from tests.alerting.incident_engines import _engine, _gpu_alert, _open


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


@pytest.mark.parametrize(
    ("xid", "kind", "shown"),
    [("48", "ecc_dbe", "double-bit ECC error"), ("119", "xid", "XID 119")],
    ids=["xid48", "xid119"],
)
@pytest.mark.parametrize("together", [False, True], ids=["one POST each", "one POST"])
def test_an_xid_that_takes_a_hot_gpu_out_of_service_becomes_its_root_however_it_is_posted(
    db: str, clock: FakeClock, xid: str, kind: str, shown: str, together: bool
) -> None:
    # A rank's GPU runs hot, then an XID takes it out of service (the job stops, P0). Posted after the heat,
    # the incident kept showing "gpu r07-n02/3 thermal: ... training job llm-70b stopped", the root it had
    # shown at that GPU, where the same two alerts in one POST gave the XID's root.
    engine = _engine(db, clock, scenarios.fleet_inventory())
    hot = _gpu_alert("r07-n02", 3, "GpuTemperatureHigh")
    lost = _gpu_alert("r07-n02", 3, "GPUXid", xid=xid)
    for post in [[hot, lost]] if together else [[hot], [lost]]:
        engine.ingest(post)
        clock.advance(20)
    ((incident, priority, root_kind, _, _),) = _open(engine)
    assert (priority, root_kind) == ("P0", kind)
    assert engine.store.get(incident).title.startswith(f"gpu r07-n02/3 {shown}")

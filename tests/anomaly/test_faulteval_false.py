"""False and sympathetic alerts in the fault evaluation: job mates, neighbours, replicas, faults beside."""

from __future__ import annotations

from dataclasses import replace

import pytest

from anomaly.faulteval import (
    FAULT_CLASSES,
    LONG_OUTAGE,
    WHILE_DOWN_CLASSES,
    FaultClass,
    FaultEvalReport,
    Injection,
    _attribute,
    _Tally,
    _Truth,
    merge_reports,
)
from gpuwarden.clock import FakeClock
from gpuwarden.sim import build_fleet
from tests.anomaly.faulteval_faults import _class, _raise


def _job_mates(fleet) -> tuple[tuple[str, int], tuple[str, int], tuple[str, int]]:
    """Two GPUs on one node that run the same job, and a third that does not."""
    by_job: dict[int, list[tuple[str, int]]] = {}
    for g in fleet.gpu_refs():
        work = fleet.workload_on(g.node, g.index)
        if work is not None:
            by_job.setdefault(id(work), []).append((g.node, g.index))
    mates = next(v for v in by_job.values() if len({n for n, _ in v}) < len(v))
    a, b = next((x, y) for x in mates for y in mates if x != y and x[0] == y[0])
    other = next(
        (g.node, g.index) for g in fleet.gpu_refs() if g.node == a[0] and (g.node, g.index) not in mates
    )
    return a, b, other


def test_alerts_on_a_faulted_jobs_other_gpus_are_counted_sympathetic_with_their_delay():
    """A rank alert 37 minutes into a runaway on another GPU of its job counted as the runaway's own, never
    seen: the eval now lists it apart, late past the soft deadline, and still not false."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), (_, mate), _ = _job_mates(fleet)
    truth = _Truth(fleet, grace=900.0)
    runaway = Injection(_class("thermal_runaway"), node, gpu, 1000.0)
    truth.injections.append(runaway)
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, gpu), 1060.0, truth, tally)  # its own alert: the detection
    _attribute(_raise(node, mate), 1120.0, truth, tally)  # a rank, 2 minutes in
    _attribute(_raise(node, mate, "fleet"), 1000.0 + 37 * 60, truth, tally)  # a rank, 37 minutes in
    assert runaway.detected_at == 1060.0
    assert tally.false_alerts == []
    assert [(a["gpu"], a["model"], a["delay_s"]) for a in tally.sympathetic] == [
        (mate, "adaptive", 120),
        (mate, "fleet", 2220),
    ]
    report = FaultEvalReport({}, 1.0, 0, [], 30.0, sympathetic=tally.sympathetic)
    merged = merge_reports([report, report]).to_json()
    assert (merged["sympathetic_alerts"], merged["late_sympathetic"]) == (4, 2)
    assert merged["sympathetic_by_detector"]["GpuwardenAnomaly:fleet:"] == {
        "alerts": 2,
        "late": 2,
        "max_delay_s": 2220,
    }
    (late, _) = merged["late_sympathetic_examples"]
    assert (late["Hostname"], late["gpu"], late["fault"]) == (node, mate, f"thermal_runaway {node} GPU {gpu}")


def test_an_alert_on_a_stragglers_gpu_while_another_rank_stalls_its_job_is_the_stalls_not_its_detection():
    """Every rank of a job a hang stalls idles, the straggler's GPU with them: an alert there then is the
    hang's, sympathetic. It was taken as the straggler's detection, timed from the stall's last tick (0 s
    late), so a straggler never told apart from its idle job counted detected in time."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, slow), (_, mate), _ = _job_mates(fleet)
    truth = _Truth(fleet, grace=900.0)
    hang = Injection(_class("hung"), node, mate, 1000.0, repaired_at=1300.0)
    straggler = Injection(_class("straggler"), node, slow, 1100.0, stalled_until=1260.0)
    truth.injections += [hang, straggler]
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, slow, "fleet"), 1260.0, truth, tally)  # the job still stalled
    assert straggler.detected_at is None
    assert [(a["gpu"], a["fault"]) for a in tally.sympathetic] == [(slow, f"hung {node} GPU {mate}")]
    _attribute(_raise(node, slow), 1380.0, truth, tally)  # the job ran from 1260 s: the straggler seen
    assert (straggler.detected_at, straggler.latency()) == (1380.0, 120.0)
    assert tally.false_alerts == []


def _false_report(tally: _Tally) -> FaultEvalReport:
    """A report of ``tally``'s false alerts, as ``run_fault_eval`` makes it."""
    return FaultEvalReport(
        {},
        1.0,
        len(tally.false_alerts),
        tally.false_alerts,
        30.0,
        beside_faults=tally.beside_faults,
        on_hidden_faults=tally.on_hidden_faults,
    )


GPU_CLASSES = [c for c in FAULT_CLASSES if not c.node_level]


@pytest.mark.parametrize("fault_class", GPU_CLASSES, ids=[c.name for c in GPU_CLASSES])
def test_an_alert_on_a_neighbour_gpu_of_a_gpu_fault_is_false_and_names_the_fault_beside_it(fault_class):
    """No GPU fault of the simulator reaches another GPU of its node (``gpuwarden.sim.faults.reaches``): an
    alert on one that runs no job with the fault's GPU is false. The eval took any alert on a faulted node
    as the fault's: a straggler on GPU 3 would hide an adaptive alert on GPU 5's memory for the fault's 10
    minutes and 15 of grace. The false alert names the fault beside it, and the report counts those apart."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), _, (_, neighbour) = _job_mates(fleet)
    truth = _Truth(fleet, grace=900.0)
    truth.injections.append(Injection(fault_class, node, gpu, 1000.0, repaired_at=1600.0))
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, neighbour), 1200.0, truth, tally)  # while it is on
    _attribute(_raise(node, neighbour, "fleet"), 1600.0 + 900.0, truth, tally)  # the last second of its grace
    assert tally.sympathetic == []
    assert [(a["gpu"], a["beside"]) for a in tally.false_alerts] == [
        (str(neighbour), f"{fault_class.name} GPU {gpu}"),
        (str(neighbour), f"{fault_class.name} GPU {gpu}"),
    ]
    report = _false_report(tally).to_json()
    assert report["false_alerts_beside_a_fault"] == 2
    assert report["false_alerts_beside_faults"] == {
        f"GpuwardenAnomaly:adaptive: beside {fault_class.name}": 1,
        f"GpuwardenAnomaly:fleet: beside {fault_class.name}": 1,
    }


def test_an_alert_on_any_gpu_of_a_node_wide_fault_is_the_faults_and_names_nothing_beside():
    """A node down (or a node's power brake) acts on every GPU of the node: alerts there are its own, not
    false, and a false alert elsewhere names no fault beside it."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    truth = _Truth(fleet, grace=900.0)
    truth.injections.append(Injection(_class("node_down"), "node-01", None, 1000.0, repaired_at=1600.0))
    tally = _Tally(counted_from=0.0)
    for index in range(8):
        _attribute(_raise("node-01", index), 1700.0, truth, tally)
    served = next(i for i in range(8) if not hasattr(fleet.workload_on("node-02", i), "ranks"))
    _attribute(_raise("node-02", served), 1700.0, truth, tally)  # no rank of a job node-01 runs
    assert [(a["Hostname"], "beside" in a) for a in tally.false_alerts] == [("node-02", False)]


def test_an_alert_on_a_job_mate_after_the_faults_grace_is_false():
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), (_, mate), _ = _job_mates(fleet)
    truth = _Truth(fleet, grace=900.0)
    straggler = replace(Injection(_class("straggler"), node, gpu, 1000.0), repaired_at=1600.0)
    truth.injections.append(straggler)
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, mate), 1600.0 + 901.0, truth, tally)
    assert (len(tally.false_alerts), tally.sympathetic) == (1, [])


def _replicas(fleet) -> tuple[tuple[str, int], tuple[str, int]]:
    """Two GPUs on different nodes that serve the same inference service (one replica each)."""
    by_service: dict[int, list[tuple[str, int]]] = {}
    for g in fleet.gpu_refs():
        work = fleet.workload_on(g.node, g.index)
        if work is not None and not hasattr(work, "ranks"):
            by_service.setdefault(id(work), []).append((g.node, g.index))
    replicas = next(v for v in by_service.values() if len({n for n, _ in v}) > 1)
    a = replicas[0]
    return a, next(r for r in replicas if r[0] != a[0])


def test_an_alert_on_another_replica_of_a_faulted_inference_service_is_false():
    """A service's replicas do not wait for each other as a training job's ranks do: a hang on one replica
    leaves the others' traffic as it was (the simulator draws each replica's load on its own), so an alert on
    another replica, on another node, is no sympathy with the fault. Counted as the fault's, a false alert on
    any of the 16 GPUs serving llm-chat was hidden for the 25 minutes of each fault on one of them, and every
    serving GPU of the cluster for each node outage."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), (other_node, replica) = _replicas(fleet)
    truth = _Truth(fleet, grace=900.0)
    truth.injections.append(Injection(_class("hung"), node, gpu, 1000.0))
    truth.injections.append(Injection(_class("node_down"), node, None, 1100.0))
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(other_node, replica), 1200.0, truth, tally)
    assert (len(tally.false_alerts), tally.sympathetic) == (1, [])


def test_a_rank_alert_while_a_fault_begun_on_a_down_node_is_unseen_is_the_outages():
    """A straggler begun on a GPU of a node that is down shows nothing until the node is back: a rank of its
    job alerted on another node meanwhile is the outage's (it stalled the job), late by the outage's start,
    not the straggler's, 'raised' before it could be seen (a negative delay, never late)."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), (mate_node, mate) = next(
        (a, b) for a, b in _ranks_across_nodes(fleet) if fleet.workload_on(*a) is fleet.workload_on(*b)
    )
    truth = _Truth(fleet, grace=900.0)
    outage = Injection(LONG_OUTAGE, node, None, 1000.0, hold_seconds=1500.0)
    straggler = Injection(WHILE_DOWN_CLASSES[1], node, gpu, 1300.0, hidden_until=2500.0)
    truth.injections += [outage, straggler]
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(mate_node, mate), 1000.0 + 400.0, truth, tally)  # down, the straggler unseen
    _attribute(_raise(mate_node, mate, "fleet"), 2500.0 + 60.0, truth, tally)  # back, the straggler seen
    assert [(a["fault"], a["delay_s"]) for a in tally.sympathetic] == [
        (f"node_down_long {node}", 400),
        (f"straggler_while_down {node} GPU {gpu}", 60),
    ]
    assert len(tally.false_alerts) == 0


def _ranks_across_nodes(fleet):
    """Pairs of training GPUs on different nodes."""
    ranks = [
        (g.node, g.index) for g in fleet.gpu_refs() if hasattr(fleet.workload_on(g.node, g.index), "ranks")
    ]
    return [(a, b) for a in ranks for b in ranks if a[0] != b[0]]


def test_false_alerts_beside_faults_are_grouped_by_the_classes_whatever_their_names():
    """The grouping read the classes back out of the ``beside`` text, cut at ", " and " GPU ": a class whose
    name holds either (an ``EvalPlan`` scores any classes it is given) was cut into classes that do not
    exist."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, gpu), _, (_, neighbour) = _job_mates(fleet)
    odd = FaultClass("hbm, GPU 0 row remap", False, {"kind": "ecc_sbe_storm"})
    truth = _Truth(fleet, grace=900.0)
    truth.injections.append(Injection(odd, node, gpu, 1000.0))
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, neighbour), 1200.0, truth, tally)
    report = _false_report(tally).to_json()
    assert report["false_alerts_beside_faults"] == {
        "GpuwardenAnomaly:adaptive: beside hbm, GPU 0 row remap": 1
    }


def test_a_false_alert_on_a_stalled_stragglers_own_gpu_names_it_on_that_gpu_not_beside():
    """A straggler's GPU idles with its stalled job (``Injection.shows_at``): an alert there then is not its
    detection, and where no fault elsewhere on the job is open to explain the stall (``_Truth.shares_job``),
    not sympathetic either: a false alert. It named the straggler "beside" itself, as if on another GPU of
    its node; it names it ``on`` its GPU, not shown yet, and only faults on other GPUs beside it."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    (node, slow), _, (_, neighbour) = _job_mates(fleet)
    truth = _Truth(fleet, grace=900.0)
    straggler = Injection(_class("straggler"), node, slow, 1100.0, stalled_until=1260.0)
    truth.injections += [straggler, Injection(_class("hung"), node, neighbour, 1000.0)]
    tally = _Tally(counted_from=0.0)
    _attribute(_raise(node, slow), 1260.0, truth, tally)
    assert (straggler.detected_at, tally.sympathetic) == (None, [])
    assert [(a["gpu"], a.get("on"), a.get("beside")) for a in tally.false_alerts] == [
        (str(slow), f"straggler GPU {slow} (not shown yet: its job stalled)", f"hung GPU {neighbour}")
    ]
    report = _false_report(tally).to_json()
    assert report["false_alerts_beside_faults"] == {"GpuwardenAnomaly:adaptive: beside hung": 1}
    assert (report["false_alerts_beside_a_fault"], report["false_alerts_on_a_hidden_fault"]) == (1, 1)
    merged = merge_reports([_false_report(tally), _false_report(tally)]).to_json()
    assert merged["false_alerts_beside_faults"] == {"GpuwardenAnomaly:adaptive: beside hung": 2}
    assert (merged["false_alerts_beside_a_fault"], merged["false_alerts_on_a_hidden_fault"]) == (2, 2)

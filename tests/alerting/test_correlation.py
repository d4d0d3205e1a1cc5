from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting import scenarios
from alerting.correlation import Candidate, join_rank
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.faults import classify
from alerting.member import Member
from alerting.migrate import upgrade
from alerting.topology import locate
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, FaultKind, IncidentState, Priority, WorkloadKind, WorkloadRef

AT = datetime(2026, 3, 1, tzinfo=UTC)
JOB = WorkloadRef(WorkloadKind.TRAINING_JOB, "research", "llm-70b")


def _member(fp: str, **labels: str) -> Member:
    kind = classify(labels)
    return Member(fp, kind, locate(labels, kind), AT, True, labels)


def _node_incident(cluster: str) -> Candidate:
    members = [
        _member(f"g{i}", alertname="GPULost", cluster=cluster, rack="r07", node="r07-n01", gpu=str(i))
        for i in range(2)
    ]
    return Candidate("inc-1", (cluster, "r07", "r07-n01"), frozenset({JOB}), members, AT)


def test_a_fault_on_the_same_node_name_in_another_cluster_does_not_join() -> None:
    new = _member("x", alertname="GPULost", cluster="c2", rack="r07", node="r07-n01", gpu="3")
    assert join_rank(_node_incident("c1"), new, scenarios.fleet_inventory()) is None
    same_cluster = _member("y", alertname="GPULost", cluster="c1", rack="r07", node="r07-n01", gpu="3")
    assert join_rank(_node_incident("c1"), same_cluster, scenarios.fleet_inventory()) == 0


def test_a_symptom_of_the_incidents_workload_joins_whatever_cluster_label_it_carries() -> None:
    labels = {"cluster": "c2", "node": "r07-n01", "namespace": "research", "slurm_job": "llm-70b"}
    stall = _member("s", alertname="TrainingJobStalled", **labels)
    assert stall.location.path[0] == "c2"
    assert join_rank(_node_incident("c1"), stall, None) == 1


def test_a_symptom_of_a_same_named_workload_of_another_cluster_does_not_join() -> None:
    incident = _node_incident("c1")
    in_c1 = Candidate(
        incident.id, incident.root_path, frozenset({replace(JOB, cluster="c1")}), incident.members, AT
    )
    labels = {"cluster": "c2", "node": "r07-n01", "namespace": "research", "slurm_job": "llm-70b"}
    stall = _member("s", alertname="TrainingJobStalled", **labels)
    assert join_rank(in_c1, stall, None) is None  # c2's llm-70b is another job
    same = _member("t", alertname="TrainingJobStalled", **{**labels, "cluster": "c1"})
    assert join_rank(in_c1, same, None) == 1


def test_an_incidents_facts_gathered_alert_by_alert_are_those_of_all_its_alerts_at_once() -> None:
    from alerting.batch import OpenIncident  # noqa: PLC0415
    from alerting.root_facts import root_facts  # noqa: PLC0415
    from gpuwarden.model import IncidentState, Priority  # noqa: PLC0415

    where = {"cluster": "c1", "rack": "r07"}
    arriving = [
        _member("a", alertname="GPUXid", node="r07-n01", gpu="1", xid="13", **where),
        _member("b", alertname="GPUTemperatureHigh", node="r07-n02", gpu="2", **where),
        _member("c", alertname="GPUXid", node="r07-n02", gpu="3", xid="13", **where),
        # The node goes down after its XID: the XID's name is no longer one "not on a taken node" there.
        _member("d", alertname="NodeDown", node="r07-n01", **where),
        _member("e", alertname="NodeDown", node="r07-n02", **where),
        _member("f", alertname="GPUXid", node="r07-n03", gpu="0", xid="13", **where),
    ]
    inc = OpenIncident("inc-1", ("c1", "r07"), Priority.P3, IncidentState.TRIGGERED, AT)
    for k, member in enumerate(arriving):
        inc.members[member.fingerprint] = member
        assert inc.facts() == root_facts(arriving[: k + 1]), member.fingerprint
    assert inc.facts().signals == frozenset({("GPUXid", FaultKind.XID, 13)})  # on r07-n03, no outage took it


@pytest.mark.parametrize(
    ("xid", "rank"), [("119", 5), ("31", None)], ids=["the-same-code-rolls-up", "another-code-does-not"]
)
def test_the_cluster_roll_up_of_a_spreading_xid_takes_only_that_xids_code(xid: str, rank: int | None) -> None:
    members = [
        _member(f"m{n}", alertname="GPUXid", cluster="c1", rack="r02", node=f"r02-n0{n}", gpu="0", xid="119")
        for n in (1, 2)
    ]
    rollout = Candidate("inc-1", ("c1", "r02"), frozenset(), members, AT)
    new = _member("x", alertname="GPUXid", cluster="c1", rack="r05", node="r05-n03", gpu="4", xid=xid)
    assert join_rank(rollout, new, scenarios.fleet_inventory()) == rank


def _fed(tmp_path: Path, faults: str) -> tuple[IncidentEngine, list[list[str]]]:
    """An engine as ``gpuwarden serve`` with only ``alerting.quiet_period_seconds: 30`` (no inventory), fed
    ``faults`` (``"SECONDS ALERTNAME NODE[/GPU]"``, comma-separated), each alert posted at its onset with only
    a ``node`` label (and ``gpu``), no cluster or rack; and the nodes of each open incident, sorted."""
    path = str(tmp_path / "incidents.db")
    upgrade(make_engine(path))
    clock = FakeClock(AT.timestamp())
    config = AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=30)
    engine = IncidentEngine(make_engine(path), clock, config)
    for fault in faults.split(","):
        at, name, where = fault.split()
        node, _, gpu = where.partition("/")
        clock.advance(AT.timestamp() + float(at) - clock.time())
        labels = {"alertname": name, "node": node, "severity": "critical", **({"gpu": gpu} if gpu else {})}
        engine.ingest([Alert(labels, starts_at=clock.now(), ends_at=clock.now() + timedelta(seconds=600))])
        engine.tick()
    nodes = [
        sorted({a.labels.get("node", "") for a in engine.store.alerts_of(row.id)})
        for row, _ in engine.store.list_rows()
        if row.state != IncidentState.RESOLVED.value
    ]
    return engine, sorted(nodes)


def test_independent_faults_on_nodes_of_unknown_racks_do_not_snowball_into_one_cluster_incident(
    tmp_path: Path,
) -> None:
    # Reduced from a long run without an inventory: two double-bit ECC errors and a hot GPU on node-02, a
    # hot GPU and the node down on node-14, then one more ECC error on node-09. The ECC error rolled
    # node-02's incident up to the cluster, whose facts then held node-02's GpuTempHigh as a "spreading
    # signal": node-14's incident was absorbed for its hot GPU, and with it node-14's NodeDown, so the
    # incident ("node_down @ cluster") took everything on node-14 and every later fault of those names.
    # (node-02's hot GPU is the first ECC error's: GpuTempHigh, a name of no known kind, on another GPU is
    # now its own incident, and the two ECC errors alone are a pattern that rolls up where racks are unknown.)
    engine, nodes = _fed(
        tmp_path,
        "0 GpuEccDbe node-02/7, 28 GpuTempHigh node-02/7, 52 GpuTempHigh node-14/4, 64 GpuEccDbe node-02/4,"
        "73 NodeDown node-14, 153 GpuEccDbe node-09/5, 160 GpuTempHigh node-11/0",
    )
    assert nodes == [["node-02"], ["node-09"], ["node-11"], ["node-14"]]
    kinds = {r.root_kind for r, _ in engine.store.list_rows() if r.state != IncidentState.RESOLVED.value}
    assert "node_down" in kinds  # node-14's own incident, rooted at its node


def test_a_spreading_signal_does_not_absorb_another_nodes_outage_that_holds_the_signal_too(
    tmp_path: Path,
) -> None:
    # The same alert on two GPUs of node-02 and then on node-09 is one signal spreading (racks unknown):
    # one incident at the cluster. node-05 is down and one of its GPUs raised that alert as well: the
    # merge pass took node-05's whole incident in for it, NodeDown included, after which the cluster's
    # incident took everything on node-05. That alert is the spread's (as in every arrival order: a
    # rollout holds all of its XIDs, see test_arrival_order), node-05's outage its own incident.
    engine, nodes = _fed(
        tmp_path,
        "0 GpuXidError node-02/1, 5 GpuXidError node-02/2, 10 NodeDown node-05, 12 GpuXidError node-05/3,"
        "20 GpuXidError node-09/5, 30 GpuTempHigh node-05/6",
    )
    assert nodes == [["node-02", "node-05", "node-09"], ["node-05"]]
    rows = {r.root_kind: r for r, _ in engine.store.list_rows() if r.state != IncidentState.RESOLVED.value}
    assert rows["node_down"].root_target["name"] == "node-05"
    assert {a.labels["alertname"] for a in engine.store.alerts_of(rows["xid"].id)} == {"GpuXidError"}


def test_a_cluster_that_a_signal_spread_to_takes_only_that_signal_not_its_first_nodes_other_pattern(
    tmp_path: Path,
) -> None:
    # node-02 shows two patterns (an XID on two GPUs, the same two GPUs hot: one incident, as an XID
    # explains what is on its GPU); the XID then reaches node-09: the cluster's incident. The heat never
    # left node-02: a hot GPU on node-11 is node-11's own fault.
    _, nodes = _fed(
        tmp_path,
        "0 GpuXidError node-02/1, 5 GpuXidError node-02/2, 8 GpuTempHigh node-02/1, 9 GpuTempHigh node-02/2,"
        "20 GpuXidError node-09/5, 30 GpuTempHigh node-11/0, 35 GpuXidError node-13/7",
    )
    assert nodes == [["node-02", "node-09", "node-13"], ["node-11"]]


def test_an_incidents_facts_asked_between_its_alerts_show_every_alert_that_came_since() -> None:
    from alerting.batch import OpenIncident  # noqa: PLC0415

    where = {"cluster": "c1", "rack": "r07"}
    xid = ("GPUXid", FaultKind.XID, 13)
    hot = ("GPUTemperatureHigh", FaultKind.THERMAL, None)
    stale = ("DCGMExporterStale", FaultKind.EXPORTER_STALE, None)
    inc = OpenIncident("inc-1", ("c1", "r07"), Priority.P3, IncidentState.TRIGGERED, AT)

    def join(*labels: tuple[str, str, str]) -> tuple[frozenset[tuple[str, FaultKind, int | None]], bool]:
        for name, node, gpu in labels:
            extra = {"xid": "13"} if name == "GPUXid" else {}
            member = _member(f"m{len(inc.members)}", alertname=name, node=node, gpu=gpu, **extra, **where)
            inc.members[member.fingerprint] = member
        return inc.facts().signals, inc.facts().outage_kind

    assert join(("GPUXid", "r07-n01", "1")) == (frozenset(), False)  # one node: that node's
    assert join(("GPUXid", "r07-n02", "2")) == (frozenset({xid}), False)
    # Several at once, one of them an outage.
    got = join(
        ("GPUTemperatureHigh", "r07-n01", "2"),
        ("GPUTemperatureHigh", "r07-n02", "3"),
        ("GPULost", "r07-n02", "4"),
    )
    assert got == (frozenset({xid, hot}), True)
    assert inc.facts().gpus_out == {("c1", "r07", "r07-n02", "4")}
    # Both nodes go down: their alerts are the outages' evidence, no signal of their own any more.
    assert join(("NodeDown", "r07-n01", ""))[0] == frozenset({xid, hot})
    assert join(("NodeDown", "r07-n02", ""))[0] == frozenset()
    assert join(("GPUXid", "r07-n03", "0"))[0] == frozenset({xid})  # on a node no outage took
    # A second node for a signal, taken by an outage: the first one was not.
    assert join(("DCGMExporterStale", "r07-n04", "0"))[0] == frozenset({xid})
    assert join(("DCGMExporterStale", "r07-n01", "0"))[0] == frozenset({xid, stale})


Signals = frozenset[tuple[str, FaultKind, int | None]]


def _by_definition(members: list[Member]) -> tuple[Signals, tuple[str, FaultKind, int | None] | None, bool]:
    """The signals, the one XID spreading and whether an outage kind is among them, as ``RootFacts`` defines
    them, worked out from all the members at once. Signals: of no outage kind, on two nodes or more, one of
    which no whole-node (or larger) outage took; the XID spreading: the only signal of the infrastructure
    alerts, an XID, a signal, with no outage kind among the alerts."""
    outages = (FaultKind.NODE_DOWN, FaultKind.GPU_LOST)
    taken = {m.location.path for m in members if m.is_outage and 0 < len(m.location.path) <= 3}
    places: dict[tuple[str, FaultKind, int | None], set[tuple[str, ...]]] = {}
    for m in members:
        if m.kind not in outages:
            places.setdefault(m.signal, set()).add(m.location.path[:3])
    free = [
        s for s, nodes in places.items() if any(all(n[:d] not in taken for d in (1, 2, 3)) for n in nodes)
    ]
    signals = frozenset(s for s in free if len(places[s]) >= 2)
    outage_kind = any(m.kind in outages for m in members)
    infra = list(places)  # no workload symptom among these members
    one = infra[0] if len(infra) == 1 else None
    spread = (
        one if one is not None and one[1] is FaultKind.XID and one in signals and not outage_kind else None
    )
    return signals, spread, outage_kind


@pytest.mark.parametrize("seed", range(8))
def test_an_incidents_facts_gathered_alert_by_alert_are_those_of_their_definition(seed: int) -> None:
    from alerting.batch import OpenIncident  # noqa: PLC0415

    rng = random.Random(seed)
    # Half the runs mostly one XID spreading, with now and then another signal or an outage.
    names = ["GPUXid", "GPUTemperatureHigh", "DCGMExporterStale", "GPULost", "NodeDown"]
    weights = [1, 1, 1, 1, 1] if seed % 2 else [30, 1, 1, 1, 1]
    inc = OpenIncident("inc-1", ("c1", "r07"), Priority.P3, IncidentState.TRIGGERED, AT)
    joined: list[Member] = []
    for k in range(60):
        name, node = rng.choices(names, weights)[0], f"r07-n0{rng.randint(1, 5)}"
        gpu = {} if name == "NodeDown" else {"gpu": str(rng.randint(0, 3))}
        member = _member(f"m{k}", alertname=name, cluster="c1", rack="r07", node=node, xid="13", **gpu)
        inc.members[member.fingerprint] = member
        joined.append(member)
        if rng.random() < 0.5:  # asked after some alerts, not after every one
            facts = inc.facts()
            assert (facts.signals, facts.spread_of, facts.outage_kind) == _by_definition(joined), k


def test_two_gpu_faults_on_a_node_without_an_inventory_root_at_the_node_as_gpu_faults_not_a_node_down(
    tmp_path: Path,
) -> None:
    # Without an inventory nobody knows how many GPUs node-02 has: two of them with a double-bit ECC error
    # are two GPUs to reset, not the whole node down (which would read "node_down" and page as a lost host).
    engine, nodes = _fed(tmp_path, "0 GpuEccDbe node-02/7, 20 GpuEccDbe node-02/4")
    assert nodes == [["node-02"]]
    ((row, count),) = engine.store.list_rows()
    assert (count, row.root_kind) == (2, "ecc_dbe")
    assert (row.root_target["type"], row.root_target["name"]) == ("node", "node-02")
    assert "down" not in row.title


# A GPU exporter scraped by IP with no `Hostname` label (its GPUs are at node "10.1.2.3") and an inference
# server on the same host, scraped at the same IP: its latency alert is about the service, not a node, but
# the service runs on that node and is hit by its fault.
_DCGM = {
    "instance": "10.1.2.3:9400",
    "job": "dcgm",
    "alertname": "GPUXid",
    "xid": "79",
    "severity": "critical",
}
_SLOW = {
    "alertname": "GpuwardenAnomaly",
    "for": "inference_request_duration_p99",
    "model": "adaptive",
    "deviation": "up",
    "instance": "10.1.2.3:8000",
    "job": "llama",
    "route": "/v1/chat/completions",
}


_JOINED = "node 10.1.2.3 GPUs lost (fell off the bus) (inference service llama): 1 node, 2 GPUs"


@pytest.mark.parametrize(
    ("order", "lost", "server", "joined"),
    [
        ("gpus-first", ("3", "5"), "10.1.2.3:8000", True),
        ("service-first", ("3", "5"), "10.1.2.3:8000", True),
        ("one-post", ("3", "5"), "10.1.2.3:8000", True),
        ("gpus-first", ("3", "5"), "10.9.9.9:8000", False),
        ("gpus-first", ("3",), "10.1.2.3:8000", False),
    ],
    ids=["gpus-first", "service-first", "one-post", "server-at-another-address", "one-gpu-may-be-another"],
)
def test_a_service_scraped_at_the_address_of_a_gpu_exporter_without_hostname_joins_that_nodes_fault(
    tmp_path: Path, order: str, lost: tuple[str, ...], server: str, joined: bool
) -> None:
    # It did until the service's address stopped counting as a node (a pod IP is none): two incidents, the
    # node's two lost GPUs and "inference service llama degraded", though the server runs on that node. A
    # server at an address no exporter is scraped at (a pod IP), or one GPU lost (the server may run on
    # another), stays the service's own incident.
    path = str(tmp_path / "incidents.db")
    upgrade(make_engine(path))
    clock = FakeClock(AT.timestamp())
    engine = IncidentEngine(make_engine(path), clock, AlertingConfig(announce_delay_seconds=0))
    gpus = [{**_DCGM, "gpu": gpu} for gpu in lost]
    slow = {**_SLOW, "instance": server}
    posts = {"gpus-first": [gpus, [slow]], "service-first": [[slow], gpus], "one-post": [[*gpus, slow]]}
    for post in posts[order]:
        clock.advance(5)
        engine.ingest([Alert(labels, starts_at=clock.now()) for labels in post])
        engine.tick()
    titles = sorted(row.title for row, _ in engine.store.list_rows())
    if joined:
        assert titles == [_JOINED]
    else:
        assert len(titles) == 2, titles
        assert any(t.startswith("inference service llama degraded") for t in titles), titles

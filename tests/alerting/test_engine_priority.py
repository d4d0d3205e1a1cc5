"""The incident engine's priorities and titles: what impact, an alert's name and measures, flapping and a
service's replicas lost across incidents make of them."""

from __future__ import annotations

import pytest

from alerting import scenarios
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertStatus, FaultKind, GpuRef, Priority, WorkloadKind, WorkloadRef
from tests.alerting.incident_engines import (
    _engine,
    _gpu_alert,
    _ingest_in_batches,
    _open,
    _rack_down,
    _service_on_unknown_racks,
)


def test_rack_failure_with_spare_capacity_is_p1(db: str, clock: FakeClock) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory(spare_gpus=128))
    _ingest_in_batches(engine, scenarios.rack_failure(7, clock.now()))
    assert [i[1] for i in _open(engine)] == ["P1"]


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


@pytest.mark.parametrize("name", ["InferenceServiceDown", "chat_service_down", "ChatEndpointUnavailable"])
def test_a_service_down_alert_is_p0_however_its_name_is_spelled(db: str, clock: FakeClock, name: str) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([Alert({"alertname": name, "cluster": "c1", "namespace": "serving", "service": "chat"})])
    assert [row[1] for row in _open(engine)] == ["P0"]


@pytest.mark.parametrize("xid", ["48", "95"])
def test_a_double_bit_ecc_xid_takes_its_gpu_out_and_stops_the_job_on_it(
    db: str, clock: FakeClock, xid: str
) -> None:
    engine = _engine(db, clock, scenarios.fleet_inventory())
    engine.ingest([_gpu_alert("r07-n01", 2, "GpuXidError", xid=xid)])
    ((incident, priority, kind, *_),) = _open(engine)
    assert (priority, kind) == ("P0", "ecc_dbe")
    assert "training job llm-70b stopped" in engine.store.get(incident).title


@pytest.mark.parametrize(
    ("spare", "priority"), [(None, "P2"), (0, "P0")], ids=["no-inventory", "job-stopped"]
)
def test_a_double_bit_ecc_keeps_its_priority_while_the_driver_still_asks_for_the_gpu_reset(
    db: str, clock: FakeClock, spare: int | None, priority: str
) -> None:
    """`anomaly run`'s signatures end the XID 48 and GpuDoubleBitEcc alerts four ticks after the counters
    moved; the driver's GpuRecoveryActionPending (and the row remap pending) fire until the GPU is reset. The
    GPU is out of service all that time: the incident stays P2 (P0: the job on it stopped), not P3."""
    engine = _engine(db, clock, None if spare is None else scenarios.fleet_inventory(spare_gpus=spare))
    events = [_gpu_alert("r07-n01", 2, "GpuXidError", xid="48"), _gpu_alert("r07-n01", 2, "GpuDoubleBitEcc")]
    pending = [
        _gpu_alert("r07-n01", 2, "GpuRecoveryActionPending"),
        _gpu_alert("r07-n01", 2, "GpuRowRemapPending"),
    ]
    engine.ingest(events + pending)
    ((incident, opened, kind, *_),) = _open(engine)
    assert (opened, kind) == (priority, "ecc_dbe")
    clock.advance(30)
    engine.ingest([Alert(a.labels, status=AlertStatus.RESOLVED) for a in events])
    ((_, now, kind, *_),) = _open(engine)
    assert (now, kind) == (priority, "ecc_dbe")
    assert engine.store.get(incident).title.startswith("gpu r07-n01/2 double-bit ECC error")
    clock.advance(600)  # the GPU reset: the request ends, and the incident waits out its quiet period
    engine.ingest([Alert(a.labels, status=AlertStatus.RESOLVED) for a in pending])
    changes = [e.data for e in engine.store.get(incident).timeline if e.kind == "priority"]
    assert [c["to"] for c in changes] == [priority]


@pytest.mark.parametrize(
    ("code", "priority"),
    [("1", "P0"), ("4", "P0"), ("6", "P0"), ("7", "P0"), (None, "P0"), ("3", "P3"), ("5", "P3")],
    ids=["gpu-reset", "drain-and-reset", "bus-reset", "system-reboot", "no-code", "drain-p2p", "imex-domain"],
)
def test_a_pending_p2p_drain_leaves_the_gpu_in_service_where_a_reset_takes_it_out(
    db: str, clock: FakeClock, code: str | None, priority: str
) -> None:
    """NVML's drain P2P (3) asks that the processes doing peer-to-peer traffic end, then names the next
    action: the GPU is not out of service. Counted as a reset is, it made a P0 of the job on the GPU. So
    with a recovery of the IMEX domain (5): the GPU needs no reset, its node no reboot."""
    engine = _engine(db, clock, scenarios.fleet_inventory(spare_gpus=0))
    extra = {} if code is None else {"recovery_action": code}
    engine.ingest([_gpu_alert("r07-n01", 2, "GpuRecoveryActionPending", **extra)])
    ((_, opened, kind, *_),) = _open(engine)
    assert (opened, kind) == (priority, "xid")


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


def test_a_job_stopped_by_two_faults_counts_all_it_lost_against_the_spare_gpus_in_both(
    db: str, clock: FakeClock
) -> None:
    # Job llm holds every GPU of t1 (rack ra) and of t2 (rack rb); the cluster has 8 spare GPUs (an inventory
    # file: no free GPUs per node). A GPU of t1 lost: it can start again on the spare GPUs, P1. Then t2 goes
    # down, a fault of its own: the job has lost 9 GPUs, more than the 8 spare, in both incidents.
    job = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "llm", "k")
    units = tuple(frozenset({("k", node, i) for i in range(8)}) for node in ("t1", "t2"))
    nodes = [NodeInfo("t1", "k", "ra", 8), NodeInfo("t2", "k", "rb", 8)]
    engine = _engine(db, clock, StaticInventory(nodes, [WorkloadInfo(job, units)], {"k": 8}))
    lost = Alert({"alertname": "GPULost", "cluster": "k", "Hostname": "t1", "gpu": "1"})
    engine.ingest([lost])
    assert [r[1] for r in _open(engine)] == ["P1"]
    clock.advance(30)
    down = Alert({"alertname": "NodeDown", "cluster": "k", "node": "t2"})
    engine.ingest([down])
    assert sorted((_node_of(r[3]), r[1]) for r in _open(engine)) == [("t1", "P0"), ("t2", "P0")]
    clock.advance(30)
    engine.ingest([Alert(down.labels, status=AlertStatus.RESOLVED)])  # t2 is back: 1 GPU lost, 8 spare
    assert [r[1] for r in _open(engine) if _node_of(r[3]) == "t1"] == ["P1"]

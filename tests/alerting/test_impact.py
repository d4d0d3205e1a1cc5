"""Priority from impact when the fault is an XID: the catalog says whether the GPU is out of service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.faults import classify
from alerting.impact import assess
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.member import Member
from alerting.root_cause import root_cause
from alerting.topology import locate
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, FaultKind, WorkloadKind, WorkloadRef, label_fingerprint
from tests.migrated_store import migrated_sqlite


def _priority_of(tmp_path: Path, alert: Alert, spare_gpus: int = 0) -> tuple[str, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(
        make_engine(path), FakeClock(), config, scenarios.fleet_inventory(spare_gpus=spare_gpus)
    )
    engine.ingest([alert])
    ((row, _),) = engine.store.list_rows()
    return row.priority, str(row.impact.get("priority_reason", ""))


def _xid(node: str, gpu: int, code: int) -> Alert:
    return Alert(
        {"alertname": "GPUXid", "cluster": "c1", "Hostname": node, "gpu": str(gpu), "xid": str(code)}
    )


@pytest.mark.parametrize(
    ("code", "spare", "expected"),
    [
        # GSP RPC timeout: the catalog's action is a GPU reset, so the rank on it is stopped.
        (119, 0, "P0"),  # no spare GPU to restart the job on: fully stopped
        (119, 128, "P1"),  # "training job stalled by one fatal GPU"
        (46, 128, "P1"),
        # A graphics engine exception only needs the application restarted: one non-fatal XID.
        (13, 0, "P3"),
    ],
)
def test_an_xid_that_takes_a_training_gpu_out_of_service_stops_the_job(
    tmp_path: Path, code: int, spare: int, expected: str
) -> None:
    # r07-n01 GPU 2 runs a rank of llm-70b in the scenario fleet.
    assert _priority_of(tmp_path, _xid("r07-n01", 2, code), spare)[0] == expected


def test_an_out_of_service_xid_on_a_replica_loses_that_replica(tmp_path: Path) -> None:
    # Service chat has one replica on GPU 0 of each r01 node.
    assert _priority_of(tmp_path, _xid("r01-n03", 0, 119)) == (
        "P2",
        "redundant replicas lost (12% of a service's capacity)",
    )


def test_an_out_of_service_xid_on_an_idle_gpu_is_lost_capacity(tmp_path: Path) -> None:
    priority, reason = _priority_of(tmp_path, _xid("r03-n02", 5, 119))
    assert (priority, reason) == ("P2", "GPU capacity lost, no workload affected")


def test_an_xid_incident_is_titled_with_the_xid_and_its_meaning(tmp_path: Path) -> None:
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(make_engine(path), FakeClock(), config, scenarios.fleet_inventory())
    engine.ingest([_xid("r03-n02", 5, 119), _xid("r03-n02", 6, 119)])
    ((row, _),) = engine.store.list_rows()
    assert row.title.startswith("node r03-n02 XID 119 (GSP RPC Timeout): ")


def test_an_xid_on_every_gpu_of_a_rack_is_an_xid_fault_not_a_power_loss(tmp_path: Path) -> None:
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(make_engine(path), FakeClock(), config, scenarios.fleet_inventory())
    engine.ingest([_xid(f"r03-n0{n}", gpu, 119) for n in range(1, 9) for gpu in range(8)])
    ((row, count),) = engine.store.list_rows()
    assert (row.root_kind, row.root_target.get("name"), count) == ("xid", "r03", 64)
    assert row.title.startswith("rack r03 XID 119 (GSP RPC Timeout): 8 nodes, 64 GPUs")


def _service(name: str, **annotations: str) -> Alert:
    labels = {"alertname": name, "cluster": "c1", "namespace": "serving", "service": "chat"}
    return Alert(labels, annotations=annotations)


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        (_service("ChatHighErrorRate", error_ratio="0.51"), "P0"),
        (_service("ChatHighErrorRate", error_ratio="0.3"), "P1"),  # a quarter of requests or more
        (_service("ChatHighErrorRate", error_ratio="30"), "P1"),  # written as a percentage
        (_service("ChatHighErrorRate", error_ratio="0.05"), "P2"),  # some users
        (_service("ChatLatencyHigh"), "P2"),  # degraded, no measure given
        (_service("ChatSLOFastBurn"), "P1"),  # a burn-rate rule without its value in an annotation
        (_service("ChatLatencySLOSlowBurn"), "P2"),
        (_service("ChatErrorBudgetBurn", sloth_severity="page"), "P1"),
    ],
)
def test_a_service_alert_is_prioritised_by_what_it_says_of_users(
    tmp_path: Path, alert: Alert, expected: str
) -> None:
    if "sloth_severity" in alert.annotations:  # a label in Sloth's rules
        alert = Alert({**alert.labels, "sloth_severity": alert.annotations["sloth_severity"]})
    assert _priority_of(tmp_path, alert)[0] == expected


def test_a_service_said_down_is_unavailable_not_its_replicas_lost(tmp_path: Path) -> None:
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    engine = IncidentEngine(
        make_engine(path), FakeClock(), AlertingConfig(announce_delay_seconds=0), scenarios.fleet_inventory()
    )
    engine.ingest([_service("InferenceServiceDown")])
    ((row, _),) = engine.store.list_rows()
    assert (row.priority, row.title) == (
        "P0",
        "inference service chat unavailable",
    )


@pytest.mark.parametrize(
    "name",
    ["GpuHwThermalSlowdown", "GpuThermalSlowdown", "GpuOverheatingClocksReduced", "GpuThermalThrottling"],
)
def test_clocks_held_down_by_heat_are_throttling_not_a_rising_temperature(tmp_path: Path, name: str) -> None:
    alert = Alert({"alertname": name, "cluster": "c1", "Hostname": "r03-n02", "gpu": "2"})
    assert _priority_of(tmp_path, alert) == ("P2", "thermal/power throttling")
    rising = Alert({"alertname": "GpuTemperatureRising", "cluster": "c1", "Hostname": "r03-n02", "gpu": "2"})
    assert _priority_of(tmp_path / "rising", rising)[0] == "P3"


@pytest.mark.parametrize(("spare", "expected"), [(0, "P0"), (128, "P1")])
def test_a_double_bit_ecc_alert_stops_the_rank_on_its_gpu_however_it_is_named(
    tmp_path: Path, spare: int, expected: str
) -> None:
    dbe = Alert({"alertname": "GpuDoubleBitEccError", "cluster": "c1", "Hostname": "r07-n01", "gpu": "2"})
    assert _priority_of(tmp_path, dbe, spare)[0] == expected
    assert _priority_of(tmp_path / "xid", _xid("r07-n01", 2, 48), spare)[0] == expected


@pytest.mark.parametrize(("spare", "expected"), [(0, "P0"), (128, "P1")])
def test_a_stalled_job_with_no_fault_under_it_counts_its_own_clusters_spare_gpus(
    tmp_path: Path, spare: int, expected: str
) -> None:
    stall = Alert({"alertname": "TrainingJobStalled", "cluster": "c1", "slurm_job": "llm-70b"})
    assert _priority_of(tmp_path, stall, spare)[0] == expected


def test_some_lost_gpus_of_a_node_are_lost_gpus_not_the_node_down(tmp_path: Path) -> None:
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    engine = IncidentEngine(
        make_engine(path), FakeClock(), AlertingConfig(announce_delay_seconds=0), scenarios.fleet_inventory()
    )
    engine.ingest([_xid("r03-n02", 1, 79), _xid("r03-n02", 2, 79)])
    ((row, _),) = engine.store.list_rows()
    assert (row.root_kind, row.root_target["type"]) == ("gpu_lost", "node")
    assert row.title == "node r03-n02 GPUs lost (fell off the bus): 1 node, 2 GPUs"
    engine.ingest([_xid("r03-n02", gpu, 79) for gpu in range(8)])  # all of them: the node
    ((row, _),) = engine.store.list_rows()
    assert row.root_kind == "node_down"


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        (_service("ChatHighErrorRate", error_ratio="70%"), "P0"),  # as humanizePercentage writes it
        (_service("ChatHighErrorRate", error_ratio=" 30 % "), "P1"),
        (_service("ChatBurn", burn_rate="14.4x"), "P1"),
        (_service("ChatSLOFastBurn", burn_rate="2"), "P2"),  # a value the rule gives wins over its name
    ],
)
def test_measures_are_read_as_rules_format_them(tmp_path: Path, alert: Alert, expected: str) -> None:
    assert _priority_of(tmp_path, alert)[0] == expected


def test_a_sloth_slo_alert_is_about_the_service_it_names(tmp_path: Path) -> None:
    labels = {"alertname": "ErrorBudgetFastBurn", "cluster": "c1", "namespace": "serving"}
    alert = Alert({**labels, "sloth_service": "chat", "sloth_slo": "availability", "sloth_severity": "page"})
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    engine = IncidentEngine(
        make_engine(path), FakeClock(), AlertingConfig(announce_delay_seconds=0), scenarios.fleet_inventory()
    )
    engine.ingest([alert])
    ((row, _),) = engine.store.list_rows()
    assert (row.priority, row.title) == ("P1", "inference service chat degraded (ErrorBudgetFastBurn)")


def test_an_alert_firing_again_with_another_error_ratio_sets_the_priority_by_the_new_one(
    tmp_path: Path,
) -> None:
    # The incident keeps the alert's member while it is quiet; the error ratio read from its annotations
    # before it resolved must not be the one its priority keeps when it fires again.
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    clock = FakeClock()
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(make_engine(path), clock, config, scenarios.fleet_inventory())
    labels = {"alertname": "ChatHighErrorRate", "cluster": "c1", "namespace": "serving", "service": "chat"}
    seen = []
    for status, ratio in (
        (AlertStatus.FIRING, "0.3"),
        (AlertStatus.RESOLVED, "0.3"),
        (AlertStatus.FIRING, "0.9"),
    ):
        engine.ingest([Alert(labels, status=status, annotations={"error_ratio": ratio})])
        ((row, _),) = engine.store.list_rows()
        seen.append((row.priority, row.quiet_since is None, engine.store.get(row.id).impact.error_ratio))
        clock.advance(30)
    assert seen == [("P1", True, 0.3), ("P1", False, 0.3), ("P0", True, 0.9)]


def test_a_lost_mig_gpu_takes_every_replica_whose_slice_its_alerts_name_not_only_the_last(
    tmp_path: Path,
) -> None:
    # Ten replicas share node a01, which GPU each is on not known; GPU 0 is in MIG mode, its seven slices
    # held by llm-0..llm-6, and falls off the bus: XID 79 on each instance's series (dcgm-exporter repeats
    # the XID there, with the instance's pod). All seven replicas are lost, not the last alert's one.
    node = frozenset(("k", "a01", i) for i in range(8))
    pods = tuple(f"llm-{i}" for i in range(10))
    llm = WorkloadInfo(
        WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "ml", "llm", "k"),
        (node,) * 10,
        pods=pods,
        sizes=(1,) * 10,
        unit_pods=tuple((p,) for p in pods),
    )
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    inventory = StaticInventory([NodeInfo("a01", "k", "r1", 8)], [llm])
    engine = IncidentEngine(
        make_engine(path), FakeClock(), AlertingConfig(announce_delay_seconds=0), inventory
    )
    gpu = {"alertname": "GPUXid", "xid": "79", "cluster": "k", "Hostname": "a01", "gpu": "0"}
    engine.ingest([Alert({**gpu, "GPU_I_ID": str(i), "namespace": "ml", "pod": pods[i]}) for i in range(7)])
    ((row, _),) = engine.store.list_rows()
    assert engine.store.get(row.id).impact.parts == (
        "1 node",
        "1 GPU",
        "inference service llm 70% of replicas lost",
    )
    assert row.priority == "P1"  # >= 25 % of a service's capacity


def test_the_degrading_fault_a_priority_names_is_the_earliest_whatever_the_member_order() -> None:
    # An XID 13 (no degrading root), then NVLink errors on its GPU, then the job's straggler alert. The
    # members are in the order they joined while serve runs and in the store's order after a restart: the
    # reason named whichever degrading member came first in that order ("straggler" after a restart that
    # read the straggler first, an alert the store held from before).
    inventory = scenarios.fleet_inventory()
    start = datetime(2026, 1, 1, tzinfo=UTC)
    gpu = {"cluster": scenarios.CLUSTER, "Hostname": scenarios.node_name(7, 1), "gpu": "2"}
    job = {"cluster": scenarios.CLUSTER, "slurm_job": "llm-70b", "rank": "2"}
    members = [
        _member(inventory, {**gpu, "alertname": "GPUXid", "xid": "13"}, start),
        _member(inventory, {**gpu, "alertname": "GPUNVLinkErrors"}, start + timedelta(seconds=10)),
        _member(inventory, {**job, "alertname": "TrainingStepTimeStraggler"}, start + timedelta(seconds=20)),
    ]
    reasons = set()
    for order in (members, members[::-1], members[1:] + members[:1]):
        path, root = root_cause(order, inventory)
        assessment = assess(path, root, order, inventory)
        reasons.add((root.kind, assessment.priority.value, assessment.reason))
    assert reasons == {(FaultKind.XID, "P2", "nvlink: performance degraded")}


def _member(inventory: StaticInventory, labels: dict[str, str], onset: datetime) -> Member:
    kind = classify(labels)
    return Member(label_fingerprint(labels), kind, locate(labels, kind, inventory), onset, True, labels)


def test_nodes_affected_counts_the_hosts_alerts_name_without_an_inventory(tmp_path: Path) -> None:
    # Scale probe: 5,000 XID 13 alerts on 625 hosts, no inventory: the postmortem said "GPUs affected: 5000;
    # nodes affected: 0" (a degraded GPU's node was not counted, though its GPU was).
    path = tmp_path / "incidents.db"
    migrated_sqlite(path).dispose()
    engine = IncidentEngine(
        make_engine(str(path)), FakeClock(), AlertingConfig(announce_delay_seconds=0), None
    )
    hosts = {"Hostname": "n1", "node": "n2", "instance": "n3:9400"}
    alerts = [
        Alert({"alertname": "GPUXid", "cluster": "c1", label: host, "gpu": str(gpu), "xid": "13"})
        for label, host in [*hosts.items(), ("Hostname", "n4")]
        for gpu in range(2)
    ]
    engine.ingest(alerts)
    [incident_id] = engine.open_incident_ids()
    impact = engine.store.get(incident_id).impact
    assert (impact.gpus_affected, impact.nodes_affected) == (8, 4)
    assert "- GPUs affected: 8; nodes affected: 4" in engine.postmortem(incident_id).splitlines()

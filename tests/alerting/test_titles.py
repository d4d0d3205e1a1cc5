"""Incident titles: short wherever they are shown, however many workloads a fault takes."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting import scenarios as sc
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.impact import Assessment
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.subscriptions import IncidentChange
from alerting.titles import NAME_MAX, TITLE_BUDGET, title
from gpuwarden.cli.incidents_cmd import describe_root
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import (
    Alert,
    AlertStatus,
    FaultKind,
    Impact,
    NodeRef,
    Priority,
    RootCause,
    WorkloadKind,
    WorkloadRef,
)
from tests.alerting.grouping_engine import _engine as _grouping_engine
from tests.alerting.grouping_engine import _heat
from tests.alerting.title_engines import _a01_down
from tests.gpuwarden.api_client import AUTH, api_client
from tests.migrated_store import migrated_sqlite


def _titled(summary: str, node: str = "n1") -> str:
    root = RootCause(FaultKind.NODE_DOWN, NodeRef(node, "c1", "r1"))
    parts = tuple(summary.split(", ")) if summary else ()  # these tests' names hold no ", "
    return title(root, Assessment(Impact(parts=parts), Priority.P0, "test"))


def test_a_node_down_under_a_thousand_services_names_a_few_and_counts_the_rest(tmp_path: Path) -> None:
    # Each of 1,000 services has one replica on node a01 and one on a02; a01 goes down.
    nodes = [NodeInfo("a01", "k", "r1", 8), NodeInfo("a02", "k", "r1", 8)]
    services = [
        WorkloadInfo(
            WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "prod", f"svc-{i:04d}", "k"),
            (frozenset({("k", "a01", i % 8)}), frozenset({("k", "a02", i % 8)})),
        )
        for i in range(1000)
    ]
    engine = _a01_down(tmp_path, StaticInventory(nodes, services))
    ((row, _),) = engine.store.list_rows()
    assert row.title == (
        "node a01 is down: 1 node, 8 GPUs, inference service svc-0000 50% of replicas lost, inference"
        " service svc-0001 50% of replicas lost, inference service svc-0002 50% of replicas lost, inference"
        " service svc-0003 50% of replicas lost, and 996 more services"
    )
    incident = engine.store.get(row.id)
    assert len(incident.impact.workloads) == 1000  # every one stays in the impact
    assert "svc-0999 50% of replicas lost" in incident.impact.summary


@pytest.mark.parametrize(
    ("summary", "expected"),
    [
        ("1 node, 8 GPUs", "node n1 is down: 1 node, 8 GPUs"),
        (
            "1 node, 8 GPUs, training job a stopped, inference service b unavailable, inference service c 50%"
            " of replicas lost, inference service d 10% of replicas lost, pod e",
            "node n1 is down: 1 node, 8 GPUs, training job a stopped, inference service b unavailable,"
            " inference service c 50% of replicas lost, inference service d 10% of replicas lost, pod e",
        ),
    ],
    ids=["counts-only", "five-workloads"],
)
def test_a_title_with_few_short_names_lists_them_all(summary: str, expected: str) -> None:
    assert _titled(summary) == expected


def test_more_than_five_workloads_of_several_kinds_are_counted_as_workloads() -> None:
    summary = ", ".join(
        [
            "2 nodes",
            *(f"training job j{i} stopped" for i in range(3)),
            *(f"inference service s{i}" for i in range(3)),
        ]
    )
    assert _titled(summary) == (
        "node n1 is down: 2 nodes, training job j0 stopped, training job j1 stopped, training job j2 stopped,"
        " inference service s0, and 2 more services"
    )
    assert _titled(", ".join(f"training job j{i} stopped" for i in range(7))).endswith(
        "training job j3 stopped, and 3 more training jobs"
    )
    mixed = ", ".join([*(f"training job j{i} stopped" for i in range(5)), "inference service s", "pod p"])
    assert _titled(mixed).endswith("training job j3 stopped, and 3 more workloads")


def test_long_names_are_cut_and_long_lists_stop_at_the_budget() -> None:
    huge = "h" * 2500
    cut = _titled(f"1 node, training job {'j' * 2500} stopped, training job k stopped", node=huge)
    assert cut.startswith(f"node {'h' * (NAME_MAX - 6)}… is down: 1 node, training job jjj")
    assert cut.endswith("…, and 1 more training job")
    assert len(cut) < 2 * NAME_MAX + 50
    names = ", ".join(f"inference service {'s' * 90}{i} unavailable" for i in range(5))
    listed = _titled(names)
    assert len(listed) <= TITLE_BUDGET and listed.endswith("and 3 more services")


def test_a_fault_on_nodes_of_an_unnamed_cluster_is_not_titled_location_unknown(tmp_path: Path) -> None:
    # Alerts with a `node` label and no `cluster` (no inventory): an XID spreading over two nodes roots at
    # the cluster, which has no name. It was titled "GpuXid, location unknown", as for alerts naming no
    # place at all, though every alert names its node.
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    clock = FakeClock()
    engine = IncidentEngine(make_engine(path), clock, AlertingConfig(announce_delay_seconds=0))
    for node, gpu in (("node-02", "1"), ("node-02", "2"), ("node-09", "5")):
        engine.ingest([Alert({"alertname": "GpuXid", "node": node, "gpu": gpu, "xid": "119"})])
        clock.advance(5)
    engine.ingest([Alert({"alertname": "GpuXid", "bad-label": "y"})])  # this one names no place
    titles = sorted(row.title for row, _ in engine.store.list_rows())
    assert titles == [
        'GpuXid {bad-label="y"}, location unknown',
        "cluster ? XID 119 (GSP RPC Timeout): 2 nodes, 3 GPUs",
    ]


STALE = {"alertname": "GpuwardenSourceStale", "for": "source_staleness", "model": "source"}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (
            {"source": "prometheus", "server": "http://u:***@prom:9090"},
            "gpuwarden anomaly source prometheus (http://u:***@prom:9090) stale",
        ),
        (
            {"source": "prometheus", "server": "http://prom:9090", "query": "gpu_temp"},
            "gpuwarden anomaly query gpu_temp of prometheus (http://prom:9090) stale",
        ),
        ({"source": "in-process"}, "gpuwarden anomaly source in-process stale"),
    ],
    ids=["source", "query", "no-server"],
)
def test_the_anomaly_services_own_source_stale_is_titled_for_that_source(
    tmp_path: Path, labels: dict[str, str], expected: str
) -> None:
    # Prometheus down: the anomaly service's GpuwardenSourceStale names no place in the fleet, and its
    # incident was titled 'GpuwardenSourceStale {for="source_staleness", model="source",
    # source="prometheus"}, location unknown'. It is the service's own input, named from its labels.
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    engine = IncidentEngine(make_engine(path), FakeClock(), AlertingConfig(announce_delay_seconds=0))
    engine.ingest([Alert({**STALE, **labels})])
    [(row, _)] = engine.store.list_rows()
    assert row.title == expected


def test_after_a_reopening_the_recovered_count_is_of_the_current_opening_only(tmp_path: Path) -> None:
    # Six GPUs of rack r01 ran hot and cooled; two of them heat again within the reopen window, and one
    # cools. The title said "5 of 6 GPUs recovered": the four of the earlier opening counted as recovered.
    clock = FakeClock()
    engine = _grouping_engine(tmp_path, clock)
    hot = [(sc.node_name(1, n), g) for n in (1, 2, 3) for g in (0, 1)]
    engine.ingest([_heat(n, g) for n, g in hot])
    clock.advance(30)
    engine.ingest([_heat(n, g, AlertStatus.RESOLVED) for n, g in hot])
    clock.advance(AlertingConfig().quiet_period_seconds + 1)
    engine.tick()
    (row, _), *others = engine.store.list_rows()
    assert not others and row.state == "resolved"
    clock.advance(60)
    again = [hot[0], hot[2]]
    engine.ingest([_heat(n, g) for n, g in again])
    assert engine.store.get(row.id).title == "rack r01 thermal"
    clock.advance(30)
    engine.ingest([_heat(*again[0], AlertStatus.RESOLVED)])
    assert engine.store.get(row.id).title == "rack r01 thermal; 1 of 2 GPUs recovered"
    # A restarted serve reads which alerts fired since the reopening from the incident's timeline.
    restarted = _grouping_engine(tmp_path, clock)
    clock.advance(30)
    restarted.ingest([_heat(*again[0])])
    assert restarted.store.get(row.id).title == "rack r01 thermal"
    restarted.ingest([_heat(*again[1], AlertStatus.RESOLVED)])
    assert restarted.store.get(row.id).title == "rack r01 thermal; 1 of 2 GPUs recovered"


def _reopened_rack_heat_absorbing_others(tmp_path: Path, *, restart: bool) -> str:
    """GPU r01-n01/0 heats, cools, its incident resolves and reopens as it heats again; then n02, n03 and n04
    heat one by one: the n02 and n03 incidents merge into it (rack r01), n04 joins it. n02 cools, ``serve``
    restarts (or not), n03 cools: the title then."""
    tmp_path.mkdir()
    clock = FakeClock()
    engine = _grouping_engine(tmp_path, clock)
    first = sc.node_name(1, 1)
    engine.ingest([_heat(first, 0)])
    clock.advance(30)
    engine.ingest([_heat(first, 0, AlertStatus.RESOLVED)])
    clock.advance(AlertingConfig().quiet_period_seconds + 1)
    engine.tick()
    clock.advance(60)
    engine.ingest([_heat(first, 0)])
    for n in (2, 3, 4):
        clock.advance(10)
        engine.ingest([_heat(sc.node_name(1, n), 0)])
    clock.advance(30)
    engine.ingest([_heat(sc.node_name(1, 2), 0, AlertStatus.RESOLVED)])
    if restart:
        engine = _grouping_engine(tmp_path, clock)
    clock.advance(30)
    engine.ingest([_heat(sc.node_name(1, 3), 0, AlertStatus.RESOLVED)])
    ((row, _),) = engine.store.list_rows()
    assert row.reopen_count == 1
    absorbed = [e for e in engine.store.get(row.id).timeline if e.kind == "merged"]
    assert len(absorbed) == 2, "the scenario merges the n02 and n03 incidents into the reopened one"
    return row.title


def test_a_restart_keeps_the_recovered_count_of_alerts_a_reopened_incident_absorbed(tmp_path: Path) -> None:
    # The n02 and n03 alerts came by merges, whose timeline events named none of them: a restarted serve
    # took n02 (resolved) for an alert of the earlier opening and titled "1 of 3 GPUs recovered".
    live = _reopened_rack_heat_absorbing_others(tmp_path / "live", restart=False)
    assert live == "rack r01 thermal; 2 of 4 GPUs recovered"
    assert _reopened_rack_heat_absorbing_others(tmp_path / "restarted", restart=True) == live


def test_a_fault_that_stops_nothing_names_the_workloads_its_firing_alerts_carry(tmp_path: Path) -> None:
    # Heat stops nothing: the title named no workload ("rack r01 thermal"), though the alerts carry the GPUs'
    # Slurm jobs and the timeline describes them with them ("... (r01-n01, 1, Slurm job 8171)"). Not the
    # scrape job (`job="dcgm-exporter"`), nor the chat service the inventory runs on GPU 0 of these nodes
    # (no alert names it: an impact's workload that only may hold a GPU is no part of the title).
    clock = FakeClock()
    engine = _grouping_engine(tmp_path, clock)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    scrape = {"job": "dcgm-exporter"}
    jobs = {(sc.node_name(1, 1), 1): "8171", (sc.node_name(1, 2), 1): "8172"}
    hot = [*jobs, (sc.node_name(1, 3), 0)]

    def heat(node: str, gpu: int, status: AlertStatus = AlertStatus.FIRING) -> Alert:
        alert = _heat(node, gpu, status)
        job = {"slurm_job": jobs[node, gpu]} if (node, gpu) in jobs else {}
        return Alert({**alert.labels, **scrape, **job}, status=status)

    engine.ingest([heat(n, g) for n, g in hot])
    ((row, _),) = engine.store.list_rows()
    both = "rack r01 thermal (training job 8171, training job 8172)"
    assert row.title == both
    clock.advance(30)
    engine.ingest([heat(*hot[0], AlertStatus.RESOLVED)])  # 8171's GPU cools: its alert no longer fires
    one = "rack r01 thermal (training job 8172); 1 of 3 GPUs recovered"
    assert engine.store.get(row.id).title == one
    titled = [c for c in told if c.incident.id == row.id and c.incident.title == one]
    assert len(titled) == 1, "the new title is told once"
    for _ in range(3):
        clock.advance(10)
        engine.tick()
    assert [c for c in told if c.incident.id == row.id][-1] is titled[0], "not again at each tick"
    # A restarted serve titles it alike from the stored alerts, and names every job once all have cooled.
    restarted = _grouping_engine(tmp_path, clock)
    clock.advance(30)
    restarted.ingest([heat(*hot[2], AlertStatus.RESOLVED)])
    assert restarted.store.get(row.id).title == "rack r01 thermal (training job 8172); 2 of 3 GPUs recovered"
    restarted.ingest([heat(*hot[1], AlertStatus.RESOLVED)])
    assert restarted.store.get(row.id).title == both


def test_a_pod_carried_into_a_title_is_named_with_its_namespace_as_kubectl_needs_it(tmp_path: Path) -> None:
    # A StatefulSet's pod names repeat in every namespace it is deployed to: two hot GPUs under prod's and
    # staging's llm-chat-5 were both titled "... thermal (pod llm-chat-5)", and `kubectl describe pod
    # llm-chat-5` finds neither without -n. Titled "pod prod/llm-chat-5" as the timeline names it.
    engine = _grouping_engine(tmp_path, FakeClock())
    pods = {sc.node_name(1, 1): "prod", sc.node_name(2, 1): "staging"}
    engine.ingest(
        [Alert({**_heat(n, 3).labels, "pod": "llm-chat-5", "namespace": ns}) for n, ns in pods.items()]
    )
    titles = sorted(row.title for row, _ in engine.store.list_rows())
    assert titles == [
        f"gpu {sc.node_name(1, 1)}/3 thermal (pod prod/llm-chat-5)",
        f"gpu {sc.node_name(2, 1)}/3 thermal (pod staging/llm-chat-5)",
    ]


def test_the_cli_names_a_workload_root_cause_as_its_title_does(tmp_path: Path) -> None:
    # `gpuwarden incidents list` and `show` read "service degraded @ inference_service llama" (the API's
    # kind, underscore and all) and "@ pod llm-chat-5" of a pod that the title names with its namespace.
    engine = IncidentEngine(migrated_sqlite(tmp_path / "i.db"), FakeClock(), AlertingConfig())
    slow = {"alertname": "InferenceLatencyHigh", "service": "llama", "namespace": "prod"}
    stalled = {"alertname": "TrainingJobStalled", "pod": "llm-train-0", "namespace": "research"}
    engine.ingest([Alert(slow), Alert(stalled)])
    with api_client(engine) as client:
        listed = client.get("/api/v1/incidents", headers=AUTH).json()
    roots = sorted(describe_root(i["root_cause"]) for i in listed)
    assert roots == ["job stalled @ pod research/llm-train-0", "service degraded @ inference service llama"]
    assert sorted(i["title"] for i in listed) == [
        "inference service llama degraded (InferenceLatencyHigh)",
        "pod research/llm-train-0 stalled",
    ]

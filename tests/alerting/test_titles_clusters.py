"""Titles in a fleet of two clusters: each says which cluster its root cause is in, wherever shown."""

from __future__ import annotations

import json
from pathlib import Path

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.notifiers.base import build_notification
from alerting.notifiers.blocks import incident_message
from alerting.notifiers.webhook import webhook_payload
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.cli.incidents_cmd import describe_root
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, WorkloadKind, WorkloadRef
from tests.gpuwarden.api_client import AUTH, api_client
from tests.migrated_store import migrated_sqlite


def _llama_in_two_clusters(tmp_path: Path) -> IncidentEngine:
    """inference/llama runs in cluster a (nodes a01, a02) and in cluster b (nodes b01, b02)."""
    nodes = [NodeInfo(f"{c}0{i}", c, f"{c}r{i}", 8) for c in ("a", "b") for i in (1, 2)]
    services = [
        WorkloadInfo(
            WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "inference", "llama", c),
            (frozenset({(c, f"{c}01", 0)}), frozenset({(c, f"{c}02", 0)})),
        )
        for c in ("a", "b")
    ]
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    config = AlertingConfig(announce_delay_seconds=0)
    return IncidentEngine(make_engine(path), FakeClock(), config, StaticInventory(nodes, services))


def test_in_a_fleet_of_two_clusters_a_title_says_which_cluster_its_root_cause_is_in(tmp_path: Path) -> None:
    # The same inference/llama in clusters a and b, each slow: two incidents both titled "inference service
    # llama degraded", and a node of each down read "node a01 is down" beside "node b01 is down" with the
    # same service named: nobody could tell which cluster's llama was hit.
    engine = _llama_in_two_clusters(tmp_path)
    slow = {"alertname": "InferenceLatencyHigh", "service": "llama", "namespace": "inference"}
    engine.ingest([Alert({**slow, "cluster": c}) for c in ("a", "b")])
    assert sorted(row.title for row, _ in engine.store.list_rows()) == [
        "inference service llama in cluster a degraded (InferenceLatencyHigh)",
        "inference service llama in cluster b degraded (InferenceLatencyHigh)",
    ]
    incident = engine.store.get(next(r.id for r, _ in engine.store.list_rows() if "cluster a" in r.title))
    told = build_notification(IncidentChange(ChangeKind.OPENED, incident, incident.timeline[0]))
    assert webhook_payload(told)["incident"]["root_cause"]["fields"]["cluster"] == "a"
    engine.ingest([Alert({"alertname": "KubeNodeNotReady", "cluster": "b", "node": "b02"})])
    assert sorted(row.title for row, _ in engine.store.list_rows()) == [
        "inference service llama in cluster a degraded (InferenceLatencyHigh)",
        "node b02 in cluster b is down: 1 node, 8 GPUs, inference service llama 50% of replicas lost",
    ]


def test_a_title_keeps_its_cluster_once_everything_has_resolved(tmp_path: Path) -> None:
    # In a fleet of two clusters, node b01's two GPUs ran hot and cooled one after the other. While one
    # still fired the title said "node b01 in cluster b thermal; 1 of 2 GPUs recovered"; once both had
    # cooled the title (and the Slack message and incident list showing it) lost "in cluster b".
    engine = _llama_in_two_clusters(tmp_path)
    hot = {"alertname": "GPUThermal", "cluster": "b", "Hostname": "b01", "severity": "warning"}
    engine.ingest([Alert({**hot, "gpu": str(g)}) for g in (0, 1)])
    engine.ingest([Alert({**hot, "gpu": "0"}, status=AlertStatus.RESOLVED)])
    ((row, _),) = engine.store.list_rows()
    assert row.title.startswith("node b01 in cluster b thermal")
    engine.ingest([Alert({**hot, "gpu": "1"}, status=AlertStatus.RESOLVED)])
    assert engine.store.get(row.id).title.startswith("node b01 in cluster b thermal")


def test_in_a_fleet_of_two_clusters_slack_webhooks_the_postmortem_and_the_api_name_the_root_causes_cluster(
    tmp_path: Path,
) -> None:
    # The title said `node b02 in cluster b is down`, but Slack's Root cause field said `node/b02`, the
    # postmortem draft `Node down on node b02`, and `incidents list`/`show` `node down @ node b02`: a node of
    # that name may be in either cluster (a workload's `@b` was the only one named).
    engine = _llama_in_two_clusters(tmp_path)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    engine.ingest([Alert({"alertname": "KubeNodeNotReady", "cluster": "b", "node": "b02"})])
    (incident,) = (engine.store.get(r.id) for r, _ in engine.store.list_rows())
    notification = build_notification(told[-1])
    assert "node/b02@b" in json.dumps(incident_message(notification).attachments)
    assert webhook_payload(notification)["incident"]["root_cause"]["cluster"] == "b"
    assert "on node b02 in cluster b\n" in engine.postmortem(incident.id)
    with api_client(engine) as client:
        listed = client.get("/api/v1/incidents", headers=AUTH).json()
        shown = client.get(f"/api/v1/incidents/{incident.id}", headers=AUTH).json()
    assert describe_root(listed[0]["root_cause"]) == describe_root(shown["root_cause"])
    assert describe_root(shown["root_cause"]) == "node down @ node b02 in cluster b"


def test_in_a_fleet_of_two_clusters_a_reopening_by_another_alert_names_a_gpu_roots_cluster(
    tmp_path: Path,
) -> None:
    # A GPU of cluster b lost, resolved, then its exporter went stale: the title and the timeline's root cause
    # said `gpu b02/0 in cluster b`, the reopening `which its root cause gpu b02/0 explains` (a GPU names no
    # cluster of its own: only its place did, which the reopening did not look at).
    engine = _llama_in_two_clusters(tmp_path)
    lost = {"alertname": "GPULost", "cluster": "b", "Hostname": "b02", "gpu": "0"}
    engine.ingest([Alert(lost)])
    engine.ingest([Alert(lost, status=AlertStatus.RESOLVED)])
    engine.clock.advance(AlertingConfig().quiet_period_seconds + 1)
    engine.tick()
    engine.ingest([Alert({**lost, "alertname": "DCGMExporterStale"})])
    ((row, _),) = engine.store.list_rows()
    (reopened,) = [e.message for e in engine.store.get(row.id).timeline if e.kind == "reopened"]
    assert reopened.endswith("which its root cause gpu b02/0 in cluster b explains")

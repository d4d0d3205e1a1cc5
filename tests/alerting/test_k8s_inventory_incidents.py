"""Incidents over the Kubernetes inventory: reassessed as it changes or after a restart, pods an alert's GPU
may hold, services named without a namespace, MIG-only nodes, and replicas not ready."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine

from alerting.engine import IncidentEngine
from alerting.faults import classify
from alerting.inventory_file import workload_data, workload_from_data
from alerting.k8s_inventory import KubernetesInventory
from alerting.subscriptions import ChangeKind
from alerting.topology import locate
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, Priority, WorkloadKind, WorkloadRef
from tests.alerting.k8s_objects import FakeApi, inventory, llama, node, pod, serving_cluster


@dataclass
class NodeDown:
    """The serving cluster behind an engine, with g2 reported down: one incident, llama's replica on g2."""

    api: FakeApi
    clock: FakeClock
    reader: KubernetesInventory
    engine: IncidentEngine
    incident_id: str

    def replace_g2_replica(self) -> None:
        """g2 stays down; its pod is evicted and the Deployment's replacement runs on g5."""
        self.api.objects["nodes"][1] = node("g2", ready=False)
        self.api.objects["nodes"].append(node("g5"))
        self.api.objects["pods"][1] = llama(9, "g5")


def node_down_on_g2(sql: Engine, **labels: str) -> NodeDown:
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    reader = inventory(api, clock)
    config = AlertingConfig(announce_delay_seconds=0)  # told at once: the test counts what listeners hear
    engine = IncidentEngine(sql, clock, config, inventory=reader.read())
    engine.ingest([Alert({"alertname": "NodeDown", "node": "g2", **labels})])
    ((row, _),) = engine.store.list_rows(None)
    return NodeDown(api, clock, reader, engine, row.id)


def test_an_open_incident_is_assessed_again_when_the_inventory_changes(sql: Engine) -> None:
    scene = node_down_on_g2(sql)
    engine, clock = scene.engine, scene.clock
    changes: list[ChangeKind] = []
    engine.subscribe(lambda c: changes.append(c.kind))
    incident = engine.store.get(scene.incident_id)
    assert incident.priority is Priority.P1 and "llama 25% of replicas lost" in incident.title
    scene.replace_g2_replica()
    clock.advance(60)
    engine.replace_inventory(scene.reader.read())
    assert engine.store.get(incident.id).priority is Priority.P1  # lowered once that held a while
    clock.advance(300)
    engine.replace_inventory(scene.reader.read())  # the same inventory: assessed again, as it waits
    incident = engine.store.get(incident.id)
    assert incident.priority is not Priority.P1 and "llama" not in incident.title  # the service is whole
    assert changes[-1] is ChangeKind.PRIORITY_CHANGED
    assert [e.data.get("from") for e in incident.timeline if e.kind == "priority"] == [None, "P1"]
    # The same inventory again: nothing changes, nobody is told.
    told = len(changes)
    clock.advance(60)
    engine.replace_inventory(scene.reader.read())
    assert len(changes) == told and engine.store.get(incident.id).timeline == incident.timeline


def test_a_refresh_does_not_retell_an_acknowledgement_and_a_deleted_service_lets_the_priority_down(
    sql: Engine,
) -> None:
    scene = node_down_on_g2(sql)
    engine, api, clock = scene.engine, scene.api, scene.clock
    told: list[tuple[ChangeKind, str]] = []
    engine.subscribe(lambda c: told.append((c.kind, c.event.kind)))
    engine.acknowledge(scene.incident_id, "alice")
    before = len(told)
    # Another node joins: the inventory changed, this incident's assessment did not.
    api.objects["nodes"].append(node("g5"))
    engine.replace_inventory(scene.reader.read())
    assert len(told) == before  # no second "acknowledged" for Slack to post
    # The whole Deployment is deleted, its pods gone from Ready nodes: llama ended as people meant it to,
    # and the incident is the node's capacity alone.
    api.objects["pods"] = []
    for _ in range(2):
        clock.advance(400)
        engine.replace_inventory(scene.reader.read())
    incident = engine.store.get(scene.incident_id)
    assert incident.priority is Priority.P2 and "llama" not in incident.title


def test_a_job_lost_with_its_node_holds_the_priority_once_its_keep_window_passed(sql: Engine) -> None:
    api, clock = FakeApi(), FakeClock(1000.0)
    api.objects["nodes"] = [node("g1"), node("g2")]
    api.objects["pods"] = [llama(1, "g1"), pod("training", "pretrain-0", "g2", 8, ("Job", "pretrain"))]
    reader = inventory(api, clock, keep_ended_seconds=600)
    engine = IncidentEngine(sql, clock, inventory=reader.read())
    engine.ingest([Alert({"alertname": "NodeDown", "node": "g2"})])
    ((row, _),) = engine.store.list_rows(None)
    assert row.priority == "P0" and "training job pretrain stopped" in row.title
    api.objects["nodes"][1] = node("g2", ready=False)
    api.objects["pods"][1]["status"] = {"phase": "Failed", "reason": "NodeLost"}
    clock.advance(60)
    engine.replace_inventory(reader.read())  # kept: it stopped with its node
    (job,) = [w for w in reader.read().workload_list if w.ref.name == "pretrain"]
    assert (job.state, job.kept) == ("stopped", 1)
    clock.advance(601)
    engine.replace_inventory(reader.read())  # its keep window passed: pretrain left the inventory
    api.objects["nodes"].append(node("g6"))  # an unrelated change later
    clock.advance(600)
    engine.replace_inventory(reader.read())
    row = engine.store.get(row.id)
    assert row.priority is Priority.P0 and "training job pretrain stopped" in row.title


def test_a_restart_reassesses_with_an_unchanged_inventory_and_unknown_jobs_do_not_block_it(
    sql: Engine,
) -> None:
    scene = node_down_on_g2(sql, slurm_job="4242")  # a Slurm job that no inventory here knows
    assert scene.engine.store.get(scene.incident_id).priority is Priority.P1
    scene.replace_g2_replica()  # while serve is down
    restarted = IncidentEngine(sql, scene.clock, inventory=scene.reader.read())  # its read at start
    restarted.replace_inventory(scene.reader.read())  # the first refresh: the same inventory, assessed anyway
    scene.clock.advance(300)
    restarted.replace_inventory(scene.reader.read())  # the lower assessment held
    # llama is whole; job 4242 blocks nothing
    assert restarted.store.get(scene.incident_id).priority is not Priority.P1


def test_a_failed_reassessment_is_retried_at_the_next_refresh(
    sql: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    scene = node_down_on_g2(sql)
    scene.replace_g2_replica()
    fresh = scene.reader.read()

    def broken(*args: Any) -> None:
        raise RuntimeError("database is locked")

    monkeypatch.setattr(scene.engine, "_reassess", broken)
    with pytest.raises(RuntimeError):
        scene.engine.replace_inventory(fresh)
    monkeypatch.undo()
    scene.engine.replace_inventory(scene.reader.read())  # equal to the failed one
    scene.clock.advance(300)
    scene.engine.replace_inventory(scene.reader.read())
    assert scene.engine.store.get(scene.incident_id).priority is not Priority.P1


def shared_nodes(api: FakeApi) -> None:
    """The probe's cluster: gpu-a1 runs two llama replicas (2 GPUs each) and pretrain-0 (4 GPUs); gpu-a2 and
    gpu-b1 a llama replica each; gpu-b2 runs pretrain-1 alone on 4 of its 8 GPUs. No GPU assignments."""
    api.objects["nodes"] = [node(n) for n in ("gpu-a1", "gpu-a2", "gpu-b1", "gpu-b2")]
    rs, labels = ("ReplicaSet", "llama-7d9f8"), {"app": "llama", "pod-template-hash": "7d9f8"}
    api.objects["pods"] = [
        pod("inference", f"llama-7d9f8-{x}", on, 2, rs, labels)
        for x, on in [("aaaaa", "gpu-a1"), ("bbbbb", "gpu-a1"), ("ccccc", "gpu-a2"), ("ddddd", "gpu-b1")]
    ]
    api.objects["pods"] += [
        pod("training", "pretrain-0-x", "gpu-a1", 4, ("Job", "pretrain")),
        pod("training", "pretrain-1-y", "gpu-b2", 4, ("Job", "pretrain")),
    ]


def xid(node_name: str, gpu: int, **labels: str) -> Alert:
    return Alert({"alertname": "GpuXidError", "node": node_name, "gpu": str(gpu), "xid": "79", **labels})


def test_the_pod_an_alert_names_is_the_only_one_its_gpu_takes_where_indices_are_unknown(sql: Engine) -> None:
    api = FakeApi()
    shared_nodes(api)
    engine = IncidentEngine(sql, FakeClock(1000.0), inventory=inventory(api).read())
    engine.ingest([xid("gpu-a1", 0, namespace="inference", pod="llama-7d9f8-aaaaa")])
    ((row, _),) = engine.store.list_rows(None)
    assert row.title.endswith(": 1 node, 1 GPU, inference service llama 25% of replicas lost")  # no pretrain
    assert row.priority == "P1"


def test_a_fault_on_a_gpu_a_pod_may_not_hold_does_not_stop_it_unless_its_node_is_lost(sql: Engine) -> None:
    api = FakeApi()
    shared_nodes(api)
    reader = inventory(api)
    engine = IncidentEngine(sql, FakeClock(1000.0), inventory=reader.read())
    # pretrain-1 holds 4 of gpu-b2's 8 GPUs, which ones unknown; the alert names no pod (dcgm-exporter gives
    # an idle GPU none): GPU 5 may be idle.
    engine.ingest([xid("gpu-b2", 5)])
    ((row, _),) = engine.store.list_rows(None)
    assert "pretrain" not in row.title and row.priority == "P2"
    engine.ingest([Alert({"alertname": "NodeDown", "node": "gpu-b2"})])  # the whole node: it surely is
    (row,) = [r for r, _ in engine.store.list_rows(None) if r.state != "resolved"]
    assert "training job pretrain stopped" in row.title


def test_a_training_pod_that_fails_of_the_fault_keeps_its_job_in_the_incident(sql: Engine) -> None:
    api, clock = FakeApi(), FakeClock(1000.0)
    shared_nodes(api)
    reader = inventory(api, clock)
    engine = IncidentEngine(sql, clock, inventory=reader.read())
    engine.ingest([xid("gpu-a1", 0, namespace="training", pod="pretrain-0-x")])
    ((row, _),) = engine.store.list_rows(None)
    assert "training job pretrain stopped" in row.title
    priority = row.priority
    pretrain = next(p for p in api.objects["pods"] if p["metadata"]["name"] == "pretrain-0-x")
    pretrain["status"] = {"phase": "Failed", "reason": "Error"}  # the XID killed it; gpu-a1 stays Ready
    for _ in range(2):
        clock.advance(301)
        engine.replace_inventory(reader.read())
    incident = engine.store.get(row.id)
    assert "training job pretrain stopped" in incident.title and incident.priority.value == priority


def test_a_service_label_without_namespace_names_the_one_service_of_that_name() -> None:
    api = FakeApi()
    shared_nodes(api)  # llama in namespace inference
    api.objects["pods"] += [
        pod("inference", "vllm-0", "gpu-a2", 4, ("StatefulSet", "vllm")),
        pod(
            "staging",
            "llama-55c4b-z",
            "gpu-b1",
            2,
            ("ReplicaSet", "llama-55c4b"),
            {"pod-template-hash": "55c4b"},
        ),
    ]
    read = inventory(api).read()
    rate = {"alertname": "VllmHighErrorRate", "cluster": "k1", "service": "vllm", "error_ratio": "0.3"}
    located = locate(rate, classify(rate), read)
    assert located.workloads == {WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "inference", "vllm", "k1")}
    # llama runs in two namespaces: which one the alert means is not known; it stays default/llama
    down = {"alertname": "InferenceServiceDown", "cluster": "k1", "service": "llama"}
    located = locate(down, classify(down), read)
    assert located.workloads == {WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "default", "llama", "k1")}


def test_pods_of_unknown_gpu_indices_are_logged_when_their_number_changes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = FakeApi()
    shared_nodes(api)
    reader = inventory(api)
    caplog.set_level("INFO", logger="alerting.k8s_inventory")
    for _ in range(3):
        reader.read()
    api.objects["pods"].pop()  # pretrain-1-y ends
    reader.read()
    said = [r.getMessage() for r in caplog.records if "GPU indices are unknown" in r.getMessage()]
    assert [m.split(" pods")[0] for m in said] == ["kubernetes inventory: 6", "kubernetes inventory: 5"]


def test_a_node_whose_gpus_are_all_mig_devices_of_an_uncounted_resource_is_named_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The GPU operator's "mixed" MIG strategy: the node advertises nvidia.com/mig-* and no nvidia.com/gpu.
    api = FakeApi()
    mig = node("h1", 0)
    mig["status"]["capacity"] |= {"nvidia.com/mig-1g.10gb": "14", "nvidia.com/mig-3g.40gb": "2"}
    api.objects["nodes"] = [node("g1"), mig]
    reader = inventory(api)
    caplog.set_level("WARNING", logger="alerting.k8s_inventory")
    for _ in range(2):
        assert [n.name for n in reader.read().node_list] == ["g1"]
    said = [r.getMessage() for r in caplog.records if "MIG" in r.getMessage()]
    assert len(said) == 1, said  # once, not every refresh
    assert "h1" in said[0] and "nvidia.com/mig-1g.10gb, nvidia.com/mig-3g.40gb" in said[0]
    assert "gpu_resources" in said[0]
    # Counted once configured: each MIG device is one GPU of the node.
    counted = inventory(
        api, gpu_resources=["nvidia.com/gpu", "nvidia.com/mig-1g.10gb", "nvidia.com/mig-3g.40gb"]
    )
    assert [(n.name, n.gpu_count) for n in counted.read().node_list] == [("g1", 8), ("h1", 16)]


def _not_ready(replica: dict) -> dict:
    """A replica whose container crash-loops: phase Running, its Ready condition False (out of endpoints)."""
    replica["status"] = {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "False"}],
        "containerStatuses": [
            {"name": "main", "ready": False, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
        ],
    }
    return replica


@pytest.mark.parametrize(
    ("crashing", "priority", "lost"),
    [(0, "P1", "25%"), (3, "P0", "100%")],
    ids=["all-ready", "three-crashing"],
)
def test_replicas_that_are_not_ready_are_lost_with_the_fault_that_takes_the_others(
    sql: Engine, crashing: int, priority: str, lost: str
) -> None:
    # llama's replicas on g1-g3 crash-loop (phase Running, not Ready: no traffic); g4 is its last serving one.
    # Its node's loss was "25% of replicas lost", P1, where the service was down.
    api = FakeApi()
    serving_cluster(api)
    api.objects["pods"] = [_not_ready(p) if i < crashing else p for i, p in enumerate(api.objects["pods"])]
    read = inventory(api).read()
    engine = IncidentEngine(sql, FakeClock(1000.0), inventory=read)
    engine.ingest([Alert({"alertname": "NodeDown", "node": "g4"})])
    ((row, _),) = engine.store.list_rows(None)
    assert (row.priority, row.title.endswith(f"inference service llama {lost} of replicas lost")) == (
        priority,
        True,
    ), row.title
    (reason,) = [e.data["reason"] for e in engine.store.get(row.id).timeline if e.kind == "priority"]
    assert ("counting replicas that were not ready: inference service llama 3" in reason) == bool(crashing)
    # what serve shows and exports (and reads back) says which replicas do not serve
    (llama,) = read.workload_list
    assert workload_from_data(workload_data(llama)).unready == llama.unready == tuple(range(crashing))


def test_a_node_deleted_from_the_api_while_its_incident_is_open_keeps_its_place_and_lost_replica(
    sql: Engine,
) -> None:
    # g2 is deleted from the API (`kubectl delete node`, the autoscaler) with its pod: the inventory forgot
    # the node, so the incident's next alert for g2 lost its cluster and rack, and with them llama's replica
    # kept on g2 (P1 became P2, "llama" left the title).
    scene = node_down_on_g2(sql)
    engine, api, clock = scene.engine, scene.api, scene.clock
    api.objects["nodes"] = [n for n in api.objects["nodes"] if n["metadata"]["name"] != "g2"]
    api.objects["pods"] = [p for p in api.objects["pods"] if p["spec"]["nodeName"] != "g2"]
    clock.advance(60)
    inv = scene.reader.read()
    engine.replace_inventory(inv)
    g2 = inv.node("g2")
    assert g2 is not None and (g2.cluster, g2.rack, g2.usable, g2.free) == ("k1", "r1", False, 0)
    engine.ingest([Alert({"alertname": "GpuXid", "xid": "79", "Hostname": "g2", "gpu": "3"})])
    clock.advance(400)
    engine.replace_inventory(scene.reader.read())
    incident = engine.store.get(scene.incident_id)
    assert incident.priority is Priority.P1 and "llama 25% of replicas lost" in incident.title
    assert (incident.root_cause.target.cluster, incident.root_cause.target.rack) == ("k1", "r1")

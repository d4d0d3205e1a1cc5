"""Time-sliced nodes in the Kubernetes inventory: alerts name a physical GPU, pods hold replicas of one."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Engine

from alerting.engine import IncidentEngine
from alerting.k8s_assignments import Assignment
from alerting.k8s_inventory import KubernetesInventory
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert
from tests.alerting.k8s_objects import FakeApi, node, pod


def sliced(name: str, gpus: int, replicas: int, count_label: bool = True) -> dict[str, Any]:
    """A node whose ``gpus`` GPUs the device plugin hands out as ``replicas`` each (GPU feature discovery's
    labels; ``count_label`` False: without ``nvidia.com/gpu.count``)."""
    out = node(name, gpus * replicas)
    labels = {"nvidia.com/gpu.replicas": str(replicas), "nvidia.com/gpu.product": "NVIDIA-L4-SHARED"}
    if count_label:
        labels["nvidia.com/gpu.count"] = str(gpus)
    out["metadata"]["labels"] |= labels
    return out


def replica(service: str, i: int, on: str) -> dict[str, Any]:
    """Replica ``i`` of ``service`` (a Deployment), one GPU (a time-sliced replica on a time-sliced node)."""
    rs = f"{service}-5d8f"
    return pod("inf", f"{rs}-{i}", on, 1, ("ReplicaSet", rs), {"pod-template-hash": "5d8f"})


def reader(nodes: list[dict[str, Any]], pods: list[dict[str, Any]], **kwargs: Any) -> KubernetesInventory:
    api = FakeApi()
    api.objects["nodes"], api.objects["pods"] = nodes, pods
    return KubernetesInventory(FakeClock(1000.0), api, cluster="k1", **kwargs)


def xid(node_name: str, gpu: int) -> Alert:
    return Alert({"alertname": "GpuXidError", "node": node_name, "gpu": str(gpu), "xid": "79"})


def first_row(engine: IncidentEngine) -> Any:
    ((row, _),) = engine.store.list_rows(None)
    return row


@pytest.mark.parametrize("on", ["p1", "ts1"])
def test_an_xid_on_a_time_sliced_gpu_takes_the_replica_running_on_it(sql: Engine, on: str) -> None:
    # ts1 and ts2: one GPU each handed out as 4 replicas; svc-ts runs a replica on each, svc-plain one on
    # each of p1 and p2 (a GPU each, not shared). ts1 read as 4 GPUs of which the pod held 1, which one not
    # known, so an XID on its one GPU was "P2 gpu ts1/0 lost", naming no workload; p1's was P1.
    pods = [replica("svc-ts", 0, "ts1"), replica("svc-ts", 1, "ts2")]
    pods += [replica("svc-plain", 0, "p1"), replica("svc-plain", 1, "p2")]
    inventory = reader([sliced("ts1", 1, 4), sliced("ts2", 1, 4), node("p1", 1), node("p2", 1)], pods)
    engine = IncidentEngine(sql, FakeClock(1000.0), inventory=inventory.read())
    engine.ingest([xid(on, 0)])
    row = first_row(engine)
    service = "svc-ts" if on == "ts1" else "svc-plain"
    assert row.title.endswith(f": 1 node, 1 GPU, inference service {service} 50% of replicas lost")
    assert row.priority == "P1"


def test_without_assignments_a_time_sliced_gpus_fault_counts_against_every_pod_of_its_node_and_says_so(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # ts1: 2 GPUs, 4 replicas each; which GPU holds chat's or embed's replica the API does not say.
    inventory = reader([sliced("ts1", 2, 4)], [replica("chat", 0, "ts1"), replica("embed", 0, "ts1")])
    caplog.set_level("WARNING", logger="alerting.k8s_inventory")
    engine = IncidentEngine(sql, FakeClock(1000.0), inventory=inventory.read())
    inventory.read()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "time-sliced replicas of pods on 1 nodes (ts1)" in said[0]  # once
    assert "gpu_assignment_url" in said[0]
    engine.ingest([xid("ts1", 1)])
    row = first_row(engine)
    assert "service chat 100% of replicas lost" in row.title and "embed 100%" in row.title
    engine.ingest([Alert({"alertname": "NodeDown", "node": "ts1"})])
    assert any(": 1 node, 2 GPUs," in r.title for r, _ in engine.store.list_rows(None))  # not 8


def test_with_the_exporters_assignments_a_gpus_fault_lands_on_the_pods_sharing_it(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # dcgm-exporter with --kubernetes-virtual-gpus: one series per replica, with its pod. chat-0 and embed-0
    # share GPU 0 (one does not keep the other off it, as a whole GPU would); chat-1 is alone on GPU 1.
    pods = [replica("chat", 0, "ts1"), replica("chat", 1, "ts1"), replica("embed", 0, "ts1")]
    assigned = [
        Assignment("ts1", 0, "GPU-0", "inf", "chat-5d8f-0"),
        Assignment("ts1", 0, "GPU-0", "inf", "embed-5d8f-0"),
        Assignment("ts1", 1, "GPU-1", "inf", "chat-5d8f-1"),
    ]
    caplog.set_level("WARNING", logger="alerting.k8s_inventory")
    inventory = reader([sliced("ts1", 2, 4)], pods, assignments=lambda: assigned)
    read = inventory.read()
    assert [(n.name, n.gpu_count, n.gpu_uuids) for n in read.node_list] == [("ts1", 2, ("GPU-0", "GPU-1"))]
    assert not caplog.records  # every replica's GPU is known
    engine = IncidentEngine(sql, FakeClock(1000.0), inventory=read)
    engine.ingest([xid("ts1", 0)])
    assert first_row(engine).title.endswith(
        ": 1 node, 1 GPU, inference service chat 50% of replicas lost,"
        " inference service embed 100% of replicas lost"
    )


@pytest.mark.parametrize(
    ("gpus", "replicas", "count_label", "pods", "allocatable", "free"),
    [
        (2, 4, True, 0, None, 2),
        (2, 4, True, 1, None, 1),
        # the device plugin gives each replica from the GPU with the fewest taken: one on each GPU, none free
        # (free replicas over replicas per GPU would say (8 - 2) // 4 = 1)
        (2, 4, True, 2, None, 0),
        (2, 4, False, 1, None, 1),  # no count label: capacity 8 over 4 replicas
        (2, 4, True, 1, 4, 0),  # one GPU unhealthy: its 4 replicas are not allocatable
        (8, 4, True, 9, None, 0),
    ],
    ids=[
        "empty",
        "one-replica",
        "two-replicas",
        "no-count-label",
        "one-gpu-unhealthy",
        "more-pods-than-gpus",
    ],
)
def test_a_time_sliced_nodes_gpus_are_physical_and_its_free_ones_those_no_replica_is_on(
    gpus: int, replicas: int, count_label: bool, pods: int, allocatable: int | None, free: int
) -> None:
    ts = sliced("ts1", gpus, replicas, count_label)
    if allocatable is not None:
        ts["status"]["allocatable"] = {"nvidia.com/gpu": str(allocatable)}
    read = reader([ts], [replica("chat", i, "ts1") for i in range(pods)]).read()
    assert [(n.name, n.gpu_count, n.free) for n in read.node_list] == [("ts1", gpus, free)]
    assert read.spare_gpus("k1") == free


def test_spare_replicas_of_shared_gpus_are_no_room_for_a_stopped_training_job(sql: Engine) -> None:
    # train holds g1 and g2 (8 GPUs each); ts1 has 8 GPUs handed out as 4 replicas each, 2 of them taken.
    # ts1 read as 32 GPUs with 30 free, so g1's loss was P1 as if train could start again on 8 of them.
    pods = [pod("ml", f"train-{i}", f"g{i + 1}", 8, ("Job", "train")) for i in range(2)]
    pods += [replica("chat", i, "ts1") for i in range(2)]
    inventory = reader([node("g1"), node("g2"), sliced("ts1", 8, 4)], pods)
    engine = IncidentEngine(sql, FakeClock(1000.0), inventory=inventory.read())
    engine.ingest([Alert({"alertname": "NodeDown", "node": "g1"})])
    row = first_row(engine)
    assert (row.priority, "training job train stopped" in row.title) == ("P0", True)
    assert [(n.name, n.gpu_count, n.free) for n in inventory.read().node_list][-1] == ("ts1", 8, 6)


def test_a_pod_first_seen_failed_on_a_time_sliced_node_is_on_every_gpu_of_it() -> None:
    # After a restart, a replica the XID killed is listed Failed; which GPU it had, nothing says.
    failed = replica("chat", 0, "ts1")
    failed["status"] = {
        "phase": "Failed",
        "containerStatuses": [{"state": {"terminated": {"finishedAt": "1970-01-01T00:16:30Z"}}}],
    }
    read = reader([sliced("ts1", 2, 4)], [failed, replica("chat", 1, "ts1")]).read()
    (chat,) = read.workload_list
    assert chat.sizes == () and chat.units == (frozenset({("k1", "ts1", 0), ("k1", "ts1", 1)}),) * 2


def test_a_node_of_renamed_shared_replicas_gpu_resources_lacks_is_left_out_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``renameByDefault`` hands the replicas out as ``nvidia.com/gpu.shared``: a node of them counted no GPU
    and was left out without a word, its pods' faults hitting no workload."""
    renamed = sliced("ts1", 2, 4)
    renamed["status"]["capacity"] = {"nvidia.com/gpu.shared": "8"}
    renamed["status"]["allocatable"] = {"nvidia.com/gpu.shared": "8"}
    caplog.set_level("WARNING", logger="alerting.k8s_inventory")
    inventory = reader([renamed, node("p1", 1)], [])
    assert [n.name for n in inventory.read().node_list] == ["p1"]
    inventory.read()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said  # once
    assert "1 nodes left out" in said[0] and "(nodes ts1)" in said[0]
    assert "add nvidia.com/gpu.shared to alerting.kubernetes_inventory.gpu_resources" in said[0]
    counted = reader([renamed], [], gpu_resources=["nvidia.com/gpu", "nvidia.com/gpu.shared"]).read()
    assert [(n.name, n.gpu_count) for n in counted.node_list] == [("ts1", 2)]

"""MIG nodes in the Kubernetes inventory: alerts name a physical GPU, pods hold MIG slices of some GPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import Engine

from alerting.engine import IncidentEngine
from alerting.inventory_file import inventory_data, load_inventory
from alerting.k8s_assignments import Assignment
from alerting.k8s_inventory import KubernetesInventory
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert
from tests.alerting.k8s_objects import FakeApi, node, pod

SLICE = "nvidia.com/mig-1g.10gb"
RESOURCES = ("nvidia.com/gpu", SLICE)


def mixed(name: str, gpus: int | None, slices: int) -> dict[str, Any]:
    """A node of the GPU operator's "mixed" MIG strategy: ``slices`` 1g.10gb devices on ``gpus`` physical GPUs
    (GPU feature discovery's ``nvidia.com/gpu.count``; None: no such label)."""
    out = node(name, 0)
    out["status"]["capacity"][SLICE] = str(slices)
    labels = {"nvidia.com/mig.strategy": "mixed", f"{SLICE}.count": str(slices)}
    if gpus is not None:
        labels["nvidia.com/gpu.count"] = str(gpus)
    out["metadata"]["labels"] |= labels
    return out


def on_slice(name: str, on: str, service: str, resource: str = SLICE) -> dict[str, Any]:
    """A replica of ``service`` (a Deployment) holding one MIG slice."""
    rs = f"{service}-5d8f"
    replica = pod("serving", name, on, 0, ("ReplicaSet", rs), {"pod-template-hash": "5d8f"})
    replica["spec"]["containers"][0]["resources"]["limits"] = {resource: "1"}
    return replica


def cluster(nodes: list[dict[str, Any]], pods: list[dict[str, Any]]) -> FakeApi:
    api = FakeApi()
    api.objects["nodes"], api.objects["pods"] = nodes, pods
    return api


def engine_over(sql: Engine, api: FakeApi, **kwargs: Any) -> tuple[IncidentEngine, KubernetesInventory]:
    reader = KubernetesInventory(FakeClock(1000.0), api, cluster="k1", gpu_resources=RESOURCES, **kwargs)
    return IncidentEngine(sql, FakeClock(1000.0), inventory=reader.read()), reader


def xid(node_name: str, gpu: int) -> Alert:
    return Alert({"alertname": "GpuXidError", "node": node_name, "gpu": str(gpu), "xid": "79"})


def test_an_xid_on_the_one_gpu_of_a_mig_node_stops_every_pod_with_a_slice_of_it(sql: Engine) -> None:
    # m1 is one physical GPU cut in seven slices, each a whisper replica; an eighth replica runs on g1. The
    # slices were numbered 0-6 as if they were GPUs: dcgm-exporter's gpu="0" took one replica of seven (12%,
    # P2) though the GPU every one of them runs on was lost.
    pods = [on_slice(f"whisper-5d8f-{i}", "m1", "whisper") for i in range(7)]
    api = cluster(
        [node("g1", 1), mixed("m1", 1, 7)],
        [*pods, on_slice("whisper-5d8f-7", "g1", "whisper", "nvidia.com/gpu")],
    )
    engine, reader = engine_over(sql, api)
    assert [(n.name, n.gpu_count) for n in reader.read().node_list] == [("g1", 1), ("m1", 1)]
    engine.ingest([xid("m1", 0)])
    ((row, _),) = engine.store.list_rows(None)
    assert row.title.endswith(": 1 node, 1 GPU, inference service whisper 88% of replicas lost")
    assert row.priority == "P1"


def test_without_assignments_a_mig_nodes_gpu_fault_counts_against_its_pods_and_says_so_once(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # m2: two GPUs, fourteen slices; which GPU holds whisper's or embed's slice the API does not say. The
    # node, not a pod picked by slice number: both may be on GPU 1.
    pods = [on_slice("whisper-5d8f-0", "m2", "whisper"), on_slice("embed-5d8f-0", "m2", "embed")]
    api = cluster([mixed("m2", 2, 14)], pods)
    caplog.set_level("WARNING", logger="alerting.k8s_inventory")
    engine, reader = engine_over(sql, api)
    reader.read()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "MIG slices of pods on 1 nodes (m2)" in said[0]
    assert "gpu_assignment_url" in said[0]
    engine.ingest([xid("m2", 1)])
    ((row, _),) = engine.store.list_rows(None)
    assert "service embed 100% of replicas lost" in row.title and "whisper 100%" in row.title
    engine.ingest([Alert({"alertname": "NodeDown", "node": "m2"})])
    assert any(": 1 node, 2 GPUs," in r.title for r, _ in engine.store.list_rows(None))  # not 14


def test_with_the_exporters_assignments_a_gpus_fault_lands_on_the_pods_holding_its_slices(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    pods = [on_slice(f"whisper-5d8f-{i}", "m2", "whisper") for i in (0, 1)]
    api = cluster([mixed("m2", 2, 14)], [*pods, on_slice("embed-5d8f-0", "m2", "embed")])
    # dcgm-exporter's MIG series: the physical gpu, GPU_I_ID, and the pod the kubelet gave the slice to.
    assigned = [
        Assignment("m2", 0, "GPU-0", "serving", "whisper-5d8f-0"),
        Assignment("m2", 1, "GPU-1", "serving", "whisper-5d8f-1"),
        Assignment("m2", 1, "GPU-1", "serving", "embed-5d8f-0"),
    ]
    caplog.set_level("WARNING", logger="alerting.k8s_inventory")
    engine, reader = engine_over(sql, api, assignments=lambda: assigned)
    nodes = reader.read().node_list
    assert [(n.name, n.gpu_count, n.gpu_uuids) for n in nodes] == [("m2", 2, ("GPU-0", "GPU-1"))]
    assert not caplog.records  # the slices' GPUs are known
    engine.ingest([xid("m2", 1)])
    ((row, _),) = engine.store.list_rows(None)
    assert row.title.endswith(
        ": 1 node, 1 GPU, inference service embed 100% of replicas lost,"
        " inference service whisper 50% of replicas lost"
    )


def test_a_single_strategy_node_has_no_physical_gpu_count_so_its_pods_are_on_the_node_as_a_whole(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # "single": nvidia.com/gpu counts MIG devices, and GPU feature discovery overrides nvidia.com/gpu.count
    # with their number.
    single = node("s1", 7)
    single["metadata"]["labels"] |= {
        "nvidia.com/mig.strategy": "single",
        "nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-1g.5gb",
        "nvidia.com/gpu.count": "7",
    }
    api = cluster(
        [single], [on_slice(f"whisper-5d8f-{i}", "s1", "whisper", "nvidia.com/gpu") for i in (0, 1)]
    )
    caplog.set_level("WARNING", logger="alerting.k8s_inventory")
    engine, _ = engine_over(sql, api)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "1 MIG nodes (s1) have no physical GPU count" in said and "MIG slices of pods on 1 nodes" in said
    engine.ingest([xid("s1", 0)])
    ((row, _),) = engine.store.list_rows(None)
    assert "inference service whisper 100% of replicas lost" in row.title


def test_a_node_with_some_gpus_in_mig_mode_names_its_uncounted_slices_and_counts_them_once_configured(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # "mixed" with MIG on 4 of 8 GPUs: nvidia.com/gpu says 4, the slices have their own resource. With the
    # default gpu_resources the node read as a 4-GPU node, its MIG replicas were dropped without a word, and
    # its loss was "P2 node p1 is down: 1 node, 4 GPUs" while the service on its slices was down.
    partly = mixed("p1", 8, 28)
    partly["status"]["capacity"]["nvidia.com/gpu"] = "4"
    api = cluster([partly], [on_slice(f"whisper-5d8f-{i}", "p1", "whisper") for i in (0, 1)])
    caplog.set_level("WARNING", logger="alerting.k8s_inventory")
    default = KubernetesInventory(FakeClock(1000.0), api, cluster="k1")
    for _ in range(2):
        default.read()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said  # once, not every refresh
    assert "p1" in said[0] and SLICE in said[0] and "gpu_resources" in said[0]
    # Configured as the warning says: the node has its 8 GPUs and its loss stops the service.
    engine, reader = engine_over(sql, api)
    assert [(n.name, n.gpu_count) for n in reader.read().node_list] == [("p1", 8)]
    engine.ingest([Alert({"alertname": "NodeDown", "node": "p1"})])
    ((row, _),) = engine.store.list_rows(None)
    assert (row.priority, "inference service whisper 100% of replicas lost" in row.title) == ("P0", True)


def training_cluster(*extra: dict[str, Any]) -> FakeApi:
    """g1 and g2, 8 GPUs each, both held by the Job train (one 8-GPU pod on each), beside ``extra`` nodes."""
    pods = [pod("ml", f"train-{i}", f"g{i + 1}", 8, ("Job", "train")) for i in range(2)]
    return cluster([node("g1"), node("g2"), *extra], pods)


def test_idle_mig_slices_are_no_spare_gpus_for_a_training_job_stopped_with_its_node(sql: Engine) -> None:
    # m1: 8 GPUs cut in 56 slices, 2 of them taken. The slices read as 54 free GPUs, so g1's loss was "P1
    # training job train stopped", as if it could start again there: a pod asking nvidia.com/gpu: 8 cannot
    # run on MIG slices. Without the slices counted the same cluster gave P0.
    slices = [on_slice(f"whisper-5d8f-{i}", "m1", "whisper") for i in (0, 1)]
    api = training_cluster(mixed("m1", 8, 56))
    api.objects["pods"] += slices
    engine, reader = engine_over(sql, api)
    engine.ingest([Alert({"alertname": "NodeDown", "node": "g1"})])
    ((row, _),) = engine.store.list_rows(None)
    assert (row.priority, "training job train stopped" in row.title) == ("P0", True)
    read = reader.read()
    assert [(n.name, n.gpu_count, n.free) for n in read.node_list] == [
        ("g1", 8, 0),
        ("g2", 8, 0),
        ("m1", 8, 0),
    ]
    assert read.spare_gpus("k1") == 0


def test_a_mig_node_with_full_gpus_free_is_spare_for_the_job_as_any_node(sql: Engine) -> None:
    # m1: 8 GPUs in MIG mode (56 slices, all idle) beside 8 full GPUs nobody holds: room for train's 8.
    spare = mixed("m1", 16, 56)
    spare["status"]["capacity"]["nvidia.com/gpu"] = "8"
    engine, reader = engine_over(sql, training_cluster(spare))
    assert [(n.name, n.free) for n in reader.read().node_list][-1] == ("m1", 8)
    engine.ingest([Alert({"alertname": "NodeDown", "node": "g1"})])
    ((row, _),) = engine.store.list_rows(None)
    assert (row.priority, "training job train stopped" in row.title) == ("P1", True)


def single(name: str, slices: int) -> dict[str, Any]:
    """A node of the "single" MIG strategy: ``nvidia.com/gpu`` counts its ``slices`` 1g.5gb devices."""
    out = node(name, slices)
    out["metadata"]["labels"] |= {
        "nvidia.com/mig.strategy": "single",
        "nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-1g.5gb",
        "nvidia.com/gpu.count": str(slices),
    }
    return out


def partly(name: str) -> dict[str, Any]:
    """8 GPUs under the mixed strategy, 4 of them in MIG mode (28 slices) and 4 full."""
    out = mixed(name, 8, 28)
    out["status"]["capacity"]["nvidia.com/gpu"] = "4"
    return out


@pytest.mark.parametrize(
    ("nodes", "pods", "free"),
    [
        ([mixed("m1", 8, 56)], [], 0),
        ([partly("m1")], [on_slice("whisper-5d8f-0", "m1", "whisper")], 4),
        ([partly("m1")], [pod("ml", "tune-0", "m1", 1), on_slice("whisper-5d8f-0", "m1", "whisper")], 3),
        ([mixed("m1", None, 56)], [], 0),  # no physical count: its GPUs are numbered as slices, none whole
        ([single("m1", 7)], [on_slice("whisper-5d8f-0", "m1", "whisper", "nvidia.com/gpu")], 0),
    ],
    ids=["mixed-all-mig", "mixed-partly", "mixed-partly-one-taken", "mixed-uncounted", "single"],
)
def test_a_mig_nodes_free_gpus_are_its_whole_gpus_no_pod_holds(
    nodes: list[dict[str, Any]], pods: list[dict[str, Any]], free: int, tmp_path: Path
) -> None:
    read = KubernetesInventory(
        FakeClock(1000.0), cluster(nodes, pods), cluster="k1", gpu_resources=RESOURCES
    ).read()
    ((name, gpus, found),) = [(n.name, n.gpu_count, n.free) for n in read.node_list]
    assert (name, found) == ("m1", free) and found <= gpus
    assert read.spare_gpus("k1") == free
    # inventory export writes what config validate reads back: free_gpus 54 for gpus 8 was refused
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory_data(read)))
    assert load_inventory(path).node("m1").free == free  # type: ignore[union-attr]

"""Reading the Kubernetes API's objects into an inventory: nodes, racks, workloads by controller, GPU
placement with and without the exporter's assignments, spare GPUs, and pods kept after their node died."""

from __future__ import annotations

from typing import Any

import pytest

from alerting.faults import classify
from alerting.k8s_inventory import (
    Assignment,
    KubernetesInventory,
    assignments_from_labels,
    node_gpus,
    pod_gpus,
)
from alerting.topology import UNKNOWN, locate
from gpuwarden.clock import FakeClock
from gpuwarden.errors import SourceError
from gpuwarden.model import WorkloadKind, WorkloadRef

SERVICE = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "llama")


def node(
    name: str, gpus: int = 8, rack: str | None = "r1", ready: bool = True, cordoned: bool = False
) -> dict:
    labels = {"topology.kubernetes.io/rack": rack} if rack else {}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"unschedulable": True} if cordoned else {},
        "status": {
            "capacity": {"cpu": "64", "nvidia.com/gpu": str(gpus)} if gpus else {"cpu": "8"},
            "conditions": [{"type": "Ready", "status": "True" if ready else "Unknown"}],
        },
    }


def pod(
    namespace: str,
    name: str,
    on: str | None,
    gpus: int,
    owner: tuple[str, str] | None = None,
    labels: dict[str, str] | None = None,
    phase: str = "Running",
) -> dict:
    meta: dict[str, Any] = {"namespace": namespace, "name": name, "labels": labels or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    limits = {"nvidia.com/gpu": str(gpus)} if gpus else {}
    spec: dict[str, Any] = {"containers": [{"name": "main", "resources": {"limits": limits}}]}
    if on:
        spec["nodeName"] = on
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


def replica_set(namespace: str, name: str, deployment: str) -> dict:
    owner = [{"kind": "Deployment", "name": deployment, "controller": True}]
    return {"metadata": {"namespace": namespace, "name": name, "ownerReferences": owner}}


class FakeApi:
    """The objects a lister returns, changed between reads by the test."""

    def __init__(self) -> None:
        self.objects: dict[str, list[dict]] = {"nodes": [], "pods": [], "replicasets": []}
        self.calls: list[str] = []

    def __call__(self, resource: str) -> list[dict]:
        self.calls.append(resource)
        return self.objects[resource]


def serving_cluster(api: FakeApi) -> None:
    """Four 8-GPU nodes in two racks and a CPU node; llama: 4 replicas of 8 GPUs, one per GPU node."""
    api.objects["nodes"] = [
        node("g1"),
        node("g2"),
        node("g3", rack="r2"),
        node("g4", rack="r2"),
        node("cpu", 0),
    ]
    api.objects["replicasets"] = [replica_set("serving", "llama-7f9c", "llama")]
    api.objects["pods"] = [
        pod("serving", f"llama-7f9c-{i}", f"g{i}", 8, ("ReplicaSet", "llama-7f9c"), {"app": "llama-70b"})
        for i in range(1, 5)
    ]


def inventory(api: FakeApi, clock: FakeClock | None = None, **kwargs: Any) -> KubernetesInventory:
    return KubernetesInventory(clock or FakeClock(1000.0), api, cluster="k1", **kwargs)


def test_nodes_gpus_and_racks_come_from_capacity_and_labels() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node("g1"), node("g2", 4, rack=None), node("cpu", 0)]
    inv = inventory(api).read()
    g1, g2 = inv.node("g1"), inv.node("g2")
    assert g1 is not None and (g1.cluster, g1.rack, g1.gpu_count) == ("k1", "r1", 8)
    assert g2 is not None and (g2.rack, g2.gpu_count) == (UNKNOWN, 4)
    assert inv.node("cpu") is None  # no GPUs: not part of the GPU fleet
    assert node_gpus(node("x", 2), ["nvidia.com/gpu", "amd.com/gpu"]) == 2


def test_rack_label_order_decides_and_is_configurable() -> None:
    api = FakeApi()
    n = node("g1")
    n["metadata"]["labels"] = {"rack": "old", "example.com/rack": "new"}
    api.objects["nodes"] = [n]
    assert inventory(api).read().node("g1").rack == "old"  # type: ignore[union-attr]
    assert inventory(api, rack_labels=["example.com/rack"]).read().node("g1").rack == "new"  # type: ignore[union-attr]


def test_deployment_pods_are_replicas_of_one_service_that_answers_to_its_pods() -> None:
    api = FakeApi()
    serving_cluster(api)
    inv = inventory(api).read()
    [info] = inv.workloads()
    assert info.ref == SERVICE
    assert [sorted(u) for u in info.units] == [[(f"g{i}", j) for j in range(8)] for i in range(1, 5)]
    assert inv.find_workload(WorkloadKind.POD, "llama-7f9c-2", "serving") == SERVICE
    assert inv.find_workload(WorkloadKind.POD, "llama-7f9c-2", "other") is None
    assert inv.find_workload(WorkloadKind.INFERENCE_SERVICE, "llama-70b") == SERVICE  # the app label


def test_controllers_decide_the_kind_of_workload() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node(f"g{i}") for i in range(1, 6)]
    api.objects["pods"] = [
        pod("serving", "vllm-0", "g1", 8, ("StatefulSet", "vllm")),
        pod("train", "llm-w-0", "g2", 8, ("Job", "llm-w"), {"jobset.sigs.k8s.io/jobset-name": "llm-70b"}),
        pod("train", "bert-worker-0", "g3", 8, ("PyTorchJob", "bert")),
        pod("lab", "notebook", "g4", 1),
        pod("serving", "orphan-rs-1", "g5", 8, ("ReplicaSet", "orphan-rs")),  # its ReplicaSet is not listed
    ]
    refs = {w.ref for w in inventory(api).read().workloads()}
    assert refs == {
        WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "vllm"),
        WorkloadRef(WorkloadKind.TRAINING_JOB, "train", "llm-70b"),
        WorkloadRef(WorkloadKind.TRAINING_JOB, "train", "bert"),
        WorkloadRef(WorkloadKind.POD, "lab", "notebook"),
        WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "orphan-rs"),
    }


def test_pods_without_gpus_unbound_or_finished_are_not_placed() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node("g1")]
    api.objects["pods"] = [
        pod("a", "web", "g1", 0),
        pod("a", "pending", None, 8, phase="Pending"),
        pod("a", "done", "g1", 8, phase="Succeeded"),
        pod("a", "on-cpu-node", "cpu", 1),
    ]
    inv = inventory(api)
    assert inv.read().workloads() == []
    assert "replicasets" not in api.calls  # nothing holds GPUs: ReplicaSets are not worth listing


def test_gpu_requests_follow_the_schedulers_rule() -> None:
    p = pod("a", "p", "g1", 2)
    p["spec"]["containers"].append({"name": "side", "resources": {"limits": {"nvidia.com/gpu": "1"}}})
    p["spec"]["initContainers"] = [{"name": "warm", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]
    assert pod_gpus(p, ["nvidia.com/gpu"]) == 4  # the largest init container beats the sum of 3
    p["spec"]["initContainers"] = []
    assert pod_gpus(p, ["nvidia.com/gpu"]) == 3
    p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "lots"
    assert pod_gpus(p, ["nvidia.com/gpu"]) == 1  # a malformed quantity counts nothing, not a crash


def test_pods_sharing_a_node_are_placed_exactly_with_the_exporters_assignments() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node("g1", 4)]
    api.objects["pods"] = [pod("a", "p1", "g1", 1), pod("a", "p2", "g1", 2), pod("a", "p3", "g1", 1)]
    guessed = inventory(api)
    units = {w.ref.name: w.gpus for w in guessed.read().workloads()}
    assert guessed.ambiguous_pods == 3
    assert units["p1"] == {("g1", i) for i in range(4)}  # unknown: every GPU of the node counts

    rows = [
        {"Hostname": "g1", "gpu": "0", "UUID": "GPU-a", "namespace": "a", "pod": "p2"},
        {"Hostname": "g1", "gpu": "1", "UUID": "GPU-b", "namespace": "a", "pod": "p2"},
        {"Hostname": "g1", "gpu": "2", "UUID": "GPU-c", "namespace": "a", "pod": "p1"},
        {"Hostname": "g1", "gpu": "3", "UUID": "GPU-d"},  # free: no pod label
        {"Hostname": "", "gpu": "9"},  # skipped: no node
    ]
    exact = inventory(api, assignments=lambda: assignments_from_labels(rows))
    inv = exact.read()
    units = {w.ref.name: w.gpus for w in inv.workloads()}
    assert units["p1"] == {("g1", 2)} and units["p2"] == {("g1", 0), ("g1", 1)}
    assert units["p3"] == {("g1", 3)}  # the one pod left takes the one GPU left: exact too
    assert exact.ambiguous_pods == 0
    assert inv.gpu_by_uuid("GPU-c") == ("g1", 2)


def test_unreadable_assignments_fall_back_to_the_guess() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node("g1", 8)]
    api.objects["pods"] = [pod("a", "p1", "g1", 8)]

    def down() -> list[Assignment]:
        raise SourceError("connection refused", source="gpu_assignment")

    [info] = inventory(api, assignments=down).read().workloads()
    assert info.gpus == {("g1", i) for i in range(8)}  # holds the whole node: exact without them


def test_spare_gpus_are_free_gpus_of_ready_schedulable_nodes() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node("g1"), node("g2"), node("g3", ready=False), node("g4", cordoned=True)]
    api.objects["pods"] = [pod("a", "p1", "g1", 8), pod("a", "p2", "g2", 3)]
    assert inventory(api).read().spare_gpus("k1") == 5


def test_a_pod_lost_with_its_node_stays_placed_for_a_while() -> None:
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    reader = inventory(api, clock, keep_ended_seconds=600)
    reader.read()
    # g2 dies; the node controller evicts its pod and the Deployment starts a replacement on g4.
    api.objects["nodes"][1] = node("g2", ready=False)
    api.objects["pods"] = [p for p in api.objects["pods"] if p["spec"]["nodeName"] != "g2"]
    api.objects["pods"].append(
        pod("serving", "llama-7f9c-9", None, 8, ("ReplicaSet", "llama-7f9c"), phase="Pending")
    )
    clock.advance(60)
    inv = reader.read()
    [info] = inv.workloads()
    assert {("g2", 0)} <= info.gpus  # the incident of g2's failure still finds llama there
    assert inv.find_workload(WorkloadKind.POD, "llama-7f9c-2", "serving") == SERVICE
    clock.advance(601)
    [info] = reader.read().workloads()
    assert not {("g2", 0)} <= info.gpus


def test_failed_pods_are_kept_and_rolled_out_pods_are_not() -> None:
    api = FakeApi()
    serving_cluster(api)
    reader = inventory(api)
    reader.read()
    api.objects["pods"][0]["status"]["phase"] = "Failed"  # g1 is Ready, but the pod failed: kept
    del api.objects["pods"][1]  # deleted from a healthy node (a rollout): gone
    [info] = reader.read().workloads()
    nodes = {n for n, _ in info.gpus}
    assert nodes == {"g1", "g3", "g4"}


def test_an_alert_naming_a_pod_is_placed_on_its_service() -> None:
    api = FakeApi()
    serving_cluster(api)
    inv = inventory(api).read()
    labels = {"alertname": "GpuXid", "xid": "79", "Hostname": "g3", "gpu": "5", "namespace": "serving"}
    labels["pod"] = "llama-7f9c-3"
    location = locate(labels, classify(labels), inv)
    assert location.workloads == {SERVICE}
    assert location.path == ("k1", "r2", "g3", "5")


@pytest.mark.parametrize("resource", ["nodes", "pods"])
def test_a_failing_list_fails_the_read(resource: str) -> None:
    api = FakeApi()
    serving_cluster(api)

    def lister(name: str) -> list[dict]:
        if name == resource:
            raise SourceError("list: HTTP 429 Too Many Requests", source="kubernetes")
        return api(name)

    with pytest.raises(SourceError, match="429"):
        KubernetesInventory(FakeClock(0.0), lister, cluster="k1").read()

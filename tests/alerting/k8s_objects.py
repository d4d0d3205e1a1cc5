"""The Kubernetes objects the inventory tests read: nodes, pods, a fake API that lists them, and a serving
cluster."""

from __future__ import annotations

from typing import Any

from alerting.k8s_inventory import KubernetesInventory
from gpuwarden.clock import FakeClock
from gpuwarden.model import WorkloadKind, WorkloadRef

SERVICE = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "llama", "k1")


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


class FakeApi:
    """The objects a lister returns, changed between reads by the test."""

    def __init__(self) -> None:
        self.objects: dict[str, list[dict]] = {"nodes": [], "pods": []}
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
    api.objects["pods"] = [llama(i, f"g{i}") for i in range(1, 5)]


def llama(i: int, on: str | None, phase: str = "Running") -> dict:
    """Replica ``i`` of the llama Deployment (its ReplicaSet is llama-7f9c)."""
    labels = {"app": "llama-70b", "pod-template-hash": "7f9c"}
    return pod("serving", f"llama-7f9c-{i}", on, 8, ("ReplicaSet", "llama-7f9c"), labels, phase)


def inventory(api: FakeApi, clock: FakeClock | None = None, **kwargs: Any) -> KubernetesInventory:
    return KubernetesInventory(clock or FakeClock(1000.0), api, cluster="k1", **kwargs)

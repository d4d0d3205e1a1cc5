"""Reading the Kubernetes API's objects into an inventory: nodes, racks, workloads by controller, GPU
placement with and without the exporter's assignments, spare GPUs, and pods kept after their node died."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from sqlalchemy import Engine

from alerting.engine import IncidentEngine
from alerting.faults import classify
from alerting.inventory_file import workload_data, workload_from_data
from alerting.k8s_client import api_lister
from alerting.k8s_inventory import (
    Assignment,
    KubernetesInventory,
    assignments_from_labels,
    node_gpus,
    pod_gpus,
)
from alerting.subscriptions import ChangeKind
from alerting.topology import UNKNOWN, locate
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.errors import SourceError
from gpuwarden.model import Alert, Priority, WorkloadKind, WorkloadRef

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
    assert [sorted(u) for u in info.units] == [[("k1", f"g{i}", j) for j in range(8)] for i in range(1, 5)]
    assert inv.find_workload(WorkloadKind.POD, "llama-7f9c-2", "serving") == SERVICE
    assert inv.find_workload(WorkloadKind.POD, "llama-7f9c-2", "other") is None
    assert inv.find_workload(WorkloadKind.INFERENCE_SERVICE, "llama-70b") == SERVICE  # the app label


def test_controllers_and_labels_decide_the_workload() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node(f"g{i}") for i in range(1, 10)]
    rollout = {"rollouts-pod-template-hash": "6c5d"}
    api.objects["pods"] = [
        pod("serving", "vllm-0", "g1", 8, ("StatefulSet", "vllm")),
        pod("train", "llm-w-0", "g2", 8, ("Job", "llm-w"), {"jobset.sigs.k8s.io/jobset-name": "llm-70b"}),
        pod("train", "bert-worker-0", "g3", 8, ("PyTorchJob", "bert")),
        pod("lab", "notebook", "g4", 1),
        pod("serving", "orphan-rs-1", "g5", 8, ("ReplicaSet", "orphan-rs")),  # a ReplicaSet of its own
        pod("serving", "canary-6c5d-x", "g6", 8, ("ReplicaSet", "canary-6c5d"), rollout),  # an Argo Rollout
        pod("kube-system", "dcgm-probe-x", "g7", 1, ("DaemonSet", "dcgm-probe")),
        pod("lab", "nb-0", "g8", 1, ("StatefulSet", "nb"), {"notebook-name": "nb"}),
        pod(
            "serving",
            "mixtral-predictor-00001-deployment-9f-x",
            "g9",
            8,
            ("ReplicaSet", "mixtral-predictor-00001-deployment-9f"),
            {"serving.kserve.io/inferenceservice": "mixtral", "pod-template-hash": "9f"},
        ),
    ]
    refs = {w.ref for w in inventory(api).read().workloads()}
    service, job, single = WorkloadKind.INFERENCE_SERVICE, WorkloadKind.TRAINING_JOB, WorkloadKind.POD
    assert refs == {
        WorkloadRef(service, "serving", "vllm", "k1"),
        WorkloadRef(job, "train", "llm-70b", "k1"),
        WorkloadRef(job, "train", "bert", "k1"),
        WorkloadRef(single, "lab", "notebook", "k1"),
        WorkloadRef(service, "serving", "orphan-rs", "k1"),
        WorkloadRef(service, "serving", "canary", "k1"),
        WorkloadRef(single, "kube-system", "dcgm-probe-x", "k1"),
        WorkloadRef(single, "lab", "nb-0", "k1"),
        WorkloadRef(service, "serving", "mixtral", "k1"),
    }


def test_a_leader_worker_set_group_is_one_replica() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node(f"g{i}") for i in range(1, 5)]
    api.objects["pods"] = []
    for group in range(2):
        for member in range(2):
            labels = {
                "leaderworkerset.sigs.k8s.io/name": "llama",
                "leaderworkerset.sigs.k8s.io/group-index": str(group),
            }
            # the leader is owned by the LWS's StatefulSet, the workers by one named after the leader
            owner = ("StatefulSet", "llama") if member == 0 else ("StatefulSet", f"llama-{group}")
            name = f"llama-{group}" if member == 0 else f"llama-{group}-{member}"
            api.objects["pods"].append(pod("serving", name, f"g{group * 2 + member + 1}", 8, owner, labels))
    [info] = inventory(api).read().workloads()
    assert info.ref == SERVICE
    assert [sorted({n for _, n, _ in u}) for u in info.units] == [["g1", "g2"], ["g3", "g4"]]


def test_pods_without_gpus_unbound_or_finished_are_not_placed() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node("g1")]
    api.objects["pods"] = [
        pod("a", "web", "g1", 0),
        pod("a", "pending", None, 8, phase="Pending"),
        pod("a", "done", "g1", 8, phase="Succeeded"),
        pod("a", "on-cpu-node", "cpu", 1),
    ]
    assert inventory(api).read().workloads() == []


def test_gpu_requests_follow_the_schedulers_rule() -> None:
    p = pod("a", "p", "g1", 2)
    p["spec"]["containers"].append({"name": "side", "resources": {"limits": {"nvidia.com/gpu": "1"}}})
    p["spec"]["initContainers"] = [{"name": "warm", "resources": {"limits": {"nvidia.com/gpu": "4"}}}]
    assert pod_gpus(p, ["nvidia.com/gpu"]) == 4  # the largest init container beats the sum of 3
    p["spec"]["initContainers"] = []
    assert pod_gpus(p, ["nvidia.com/gpu"]) == 3
    sidecar = {"name": "proxy", "restartPolicy": "Always", "resources": {"limits": {"nvidia.com/gpu": "1"}}}
    p["spec"]["initContainers"] = [sidecar]
    assert pod_gpus(p, ["nvidia.com/gpu"]) == 4  # a sidecar runs beside the containers: added
    p["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] = "lots"
    assert pod_gpus(p, ["nvidia.com/gpu"]) == 2  # a malformed quantity counts nothing, not a crash


def test_pods_sharing_a_node_are_placed_exactly_with_the_exporters_assignments() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node("g1", 4)]
    api.objects["pods"] = [pod("a", "p1", "g1", 1), pod("a", "p2", "g1", 2), pod("a", "p3", "g1", 1)]
    guessed = inventory(api)
    units = {w.ref.name: w.gpus for w in guessed.read().workloads()}
    assert guessed.ambiguous_pods == 3
    assert units["p1"] == {("k1", "g1", i) for i in range(4)}  # unknown: every GPU of the node counts

    rows = [
        {"Hostname": "g1", "gpu": "0", "UUID": "GPU-a", "namespace": "a", "pod": "p2"},
        {"Hostname": "g1", "gpu": "1", "UUID": "GPU-b", "namespace": "a", "pod": "p2"},
        {"Hostname": "g1", "gpu": "2", "UUID": "GPU-c", "namespace": "a", "pod": "p1"},
        {"Hostname": "g1", "gpu": "3", "UUID": "GPU-d"},  # free: no pod label
        {"Hostname": "", "gpu": "9"},  # skipped: no node
        {"Hostname": "g1", "gpu": "\u00b3", "pod": "p1"},  # skipped: not an index
    ]
    exact = inventory(api, assignments=lambda: assignments_from_labels(rows))
    inv = exact.read()
    units = {w.ref.name: w.gpus for w in inv.workloads()}
    assert units["p1"] == {("k1", "g1", 2)} and units["p2"] == {("k1", "g1", 0), ("k1", "g1", 1)}
    assert units["p3"] == {("k1", "g1", 3)}  # the one pod left takes the one GPU left: exact too
    assert exact.ambiguous_pods == 0
    assert inv.gpu_by_uuid("GPU-c") == ("k1", "g1", 2)


def test_unreadable_assignments_fall_back_to_the_guess() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node("g1", 8)]
    api.objects["pods"] = [pod("a", "p1", "g1", 8)]

    def down() -> list[Assignment]:
        raise SourceError("connection refused", source="gpu_assignment")

    [info] = inventory(api, assignments=down).read().workloads()
    assert info.gpus == {("k1", "g1", i) for i in range(8)}  # holds the whole node: exact without them


def test_spare_gpus_are_free_gpus_of_ready_schedulable_nodes() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node("g1"), node("g2"), node("g3", ready=False), node("g4", cordoned=True)]
    api.objects["nodes"].append(node("g5"))
    api.objects["nodes"][-1]["status"]["allocatable"] = {"nvidia.com/gpu": "6"}  # two marked unhealthy
    api.objects["pods"] = [pod("a", "p1", "g1", 8), pod("a", "p2", "g2", 3)]
    read = inventory(api).read()
    assert read.spare_gpus("k1") == 5 + 6
    # Per node, as a stopped job's restart counts them: p2's 3 GPUs are somewhere on g2 (indices unknown).
    assert [(n.name, n.state, n.usable, n.free, len(n.idle)) for n in read.node_list] == [
        ("g1", "ready", True, 0, 0),
        ("g2", "ready", True, 5, 8),
        ("g3", "notready", False, 0, 0),
        ("g4", "ready+cordoned", False, 0, 0),
        ("g5", "ready", True, 6, 8),
    ]


def test_a_terminating_pod_holds_its_gpus_until_it_is_gone_but_serves_nothing() -> None:
    # kubectl shows it Terminating on g1 while its containers stop (a grace period can be minutes); the
    # scheduler and the device plugin give its GPUs to no one before the pod object is gone.
    api = FakeApi()
    api.objects["nodes"] = [node("g1"), node("g2")]
    leaving = pod("a", "p1", "g1", 6)
    leaving["metadata"]["deletionTimestamp"] = "2026-11-30T13:00:00Z"
    api.objects["pods"] = [leaving, pod("a", "p2", "g2", 2)]
    read = inventory(api).read()
    assert [(n.name, n.free) for n in read.node_list] == [("g1", 2), ("g2", 6)]
    assert read.spare_gpus("k1") == 8
    assert [w.ref.name for w in read.workloads()] == ["p2"]  # a rollout's old pod is not a replica


def test_a_node_whose_device_plugin_stops_keeps_its_gpus_but_is_not_spare() -> None:
    api = FakeApi()
    api.objects["nodes"] = [node("g1"), node("g2")]
    reader = inventory(api)
    reader.read()
    api.objects["nodes"][0] = node("g1", 0)  # the kubelet reports 0 GPUs once the plugin is gone
    inv = reader.read()
    assert inv.node("g1") is not None and inv.node("g1").gpu_count == 8  # type: ignore[union-attr]
    assert inv.spare_gpus("k1") == 8


def test_a_pod_lost_with_its_node_stays_placed_until_it_is_replaced_or_a_while_passed() -> None:
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    reader = inventory(api, clock, keep_ended_seconds=600)
    reader.read()
    # g2 dies; the node controller evicts its pod and the Deployment creates a replacement, not yet bound.
    api.objects["nodes"][1] = node("g2", ready=False)
    api.objects["pods"] = [p for p in api.objects["pods"] if p["spec"]["nodeName"] != "g2"]
    api.objects["pods"].append(llama(9, None, phase="Pending"))
    clock.advance(60)
    inv = reader.read()
    [info] = inv.workloads()
    assert len(info.units) == 4 and {("k1", "g2", 0)} <= info.gpus  # the incident of g2's failure finds llama
    assert inv.find_workload(WorkloadKind.POD, "llama-7f9c-2", "serving") == SERVICE
    # The replacement runs on g5: the service is whole again, the lost replica no longer counts.
    api.objects["nodes"].append(node("g5"))
    api.objects["pods"][-1] = llama(9, "g5")
    clock.advance(60)
    [info] = reader.read().workloads()
    assert len(info.units) == 4 and not {("k1", "g2", 0)} <= info.gpus
    # The replacement dies with g5: one replica is missing, the latest lost, until keep_ended_seconds.
    api.objects["nodes"][-1] = node("g5", ready=False)
    api.objects["pods"].pop()
    [info] = reader.read().workloads()
    assert len(info.units) == 4 and {("k1", "g5", 0)} <= info.gpus and not {("k1", "g2", 0)} <= info.gpus
    clock.advance(601)
    [info] = reader.read().workloads()
    assert len(info.units) == 3


def test_pods_ending_on_a_healthy_node_are_not_kept_unless_they_failed() -> None:
    api = FakeApi()
    serving_cluster(api)
    reader = inventory(api)
    reader.read()
    pods = api.objects["pods"]
    pods[0]["status"]["phase"] = "Failed"  # its own failure on Ready g1 (an XID it died of): kept
    pods[1]["status"]["phase"] = "Succeeded"  # it ended as meant: gone
    pods[2]["metadata"]["deletionTimestamp"] = "2026-11-29T12:00:00Z"  # terminating on g3 (a rollout)
    pods[3]["status"] |= {"phase": "Failed", "reason": "NodeLost"}  # failed for its node's sake: kept
    [info] = reader.read().workloads()
    assert {n for _, n, _ in info.gpus} == {"g1", "g4"} and info.kept == 2
    del pods[1]  # deleted from a healthy node (a scale-down): gone
    [info] = reader.read().workloads()
    assert {n for _, n, _ in info.gpus} == {"g1", "g4"}


def test_a_pod_first_seen_failed_is_kept_only_when_it_failed_within_the_while() -> None:
    api, clock = FakeApi(), FakeClock(datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp())
    api.objects["nodes"] = [node("g1"), node("g2")]
    done = {"containerStatuses": [{"state": {"terminated": {"finishedAt": "2026-11-29T11:50:00Z"}}}]}
    old = {"containerStatuses": [{"state": {"terminated": {"finishedAt": "2026-11-28T09:00:00Z"}}}]}
    api.objects["pods"] = [
        pod("t", "recent-0", "g1", 8, ("Job", "recent"), phase="Failed"),
        pod("t", "stale-0", "g2", 8, ("Job", "stale"), phase="Failed"),
    ]
    api.objects["pods"][0]["status"] |= done
    api.objects["pods"][1]["status"] |= old
    read = inventory(api, clock, keep_ended_seconds=3600).read()  # a serve that just started
    assert [(w.ref.name, w.state, w.kept) for w in read.workload_list] == [("recent", "stopped", 1)]
    clock.advance(3001)  # an hour after it failed
    assert inventory(api, clock, keep_ended_seconds=3600).read().workload_list == []


def test_a_pending_replacement_does_not_make_the_service_whole_and_an_expired_loss_stays_gone() -> None:
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    reader = inventory(api, clock, keep_ended_seconds=600)
    reader.read()
    # g2 dies; its pod stays listed Terminating; the replacement is bound to g5 at once, still Pending.
    api.objects["nodes"][1] = node("g2", ready=False)
    api.objects["nodes"].append(node("g5"))
    api.objects["pods"][1]["metadata"]["deletionTimestamp"] = "2026-11-29T12:00:00Z"
    api.objects["pods"].append(llama(9, "g5", phase="Pending"))
    [info] = reader.read().workloads()
    assert len(info.units) == 4 and {("k1", "g2", 0)} <= info.gpus  # 3 serving + the lost one; not 5
    assert "llama-7f9c-9" in info.pods  # the Pending replacement is known by name
    api.objects["pods"][-1] = llama(9, "g5")  # it runs: whole again
    [info] = reader.read().workloads()
    assert len(info.units) == 4 and not {("k1", "g2", 0)} <= info.gpus
    clock.advance(601)  # past keep_ended_seconds while g2's pod is still listed: not kept a second time
    reader.read()
    api.objects["pods"][-1] = llama(9, "g5", phase="Pending")  # even if the replacement stops serving
    [info] = reader.read().workloads()
    assert not {("k1", "g2", 0)} <= info.gpus


def test_after_a_restart_pods_left_on_a_dead_node_are_still_found() -> None:
    api = FakeApi()
    serving_cluster(api)
    api.objects["nodes"][2] = node("g3", rack="r2", ready=False)
    api.objects["pods"][2]["status"]["phase"] = "Unknown"  # the node stopped reporting
    [info] = inventory(api).read().workloads()  # a reader that never saw it running
    assert {n for _, n, _ in info.gpus} == {"g1", "g2", "g3", "g4"}


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


def test_an_exact_name_beats_an_alias_and_a_shared_alias_names_nothing() -> None:
    api = FakeApi()
    serving_cluster(api)
    chat = {"app": "llama", "pod-template-hash": "88aa"}  # a Deployment whose pods say app=llama
    api.objects["nodes"].append(node("g9"))
    api.objects["pods"].append(pod("serving", "chat-88aa-1", "g9", 1, ("ReplicaSet", "chat-88aa"), chat))
    inv = inventory(api).read()
    assert inv.find_workload(WorkloadKind.INFERENCE_SERVICE, "llama", "serving") == SERVICE
    helm = {"app.kubernetes.io/name": "vllm", "pod-template-hash": "77bb"}  # two charts, one name
    api.objects["pods"].append(pod("serving", "big-77bb-1", "g9", 1, ("ReplicaSet", "big-77bb"), helm))
    api.objects["pods"].append(pod("serving", "small-77bb-1", "g9", 1, ("ReplicaSet", "small-77bb"), helm))
    inv = inventory(api).read()
    assert inv.find_workload(WorkloadKind.INFERENCE_SERVICE, "vllm", "serving") is None
    assert inv.find_workload(WorkloadKind.INFERENCE_SERVICE, "llama-70b", "serving") == SERVICE


@pytest.mark.parametrize(
    "labels",
    [
        # The Prometheus Operator adds the scraped Service: the exporter's own, which the inventory lacks.
        {"service": "nvidia-dcgm-exporter", "namespace": "serving", "pod": "llama-7f9c-3"},
        # Prometheus keeps the exporter's pod labels as exported_* when the target has its own.
        {
            "namespace": "gpu-operator",
            "pod": "dcgm-x",
            "exported_namespace": "serving",
            "exported_pod": "llama-7f9c-3",
        },
    ],
    ids=["operator-service-label", "exported-pod"],
)
def test_the_gpus_pod_wins_over_labels_about_the_exporter(labels: dict[str, str]) -> None:
    api = FakeApi()
    serving_cluster(api)
    labels = {"alertname": "GpuXid", "xid": "79", "Hostname": "g3", "gpu": "5", **labels}
    assert locate(labels, classify(labels), inventory(api).read()).workloads == {SERVICE}


class _Response:
    def __init__(self, body: dict) -> None:
        self.data = json.dumps(body).encode()


def test_the_lister_follows_continue_tokens_and_lists_bound_pods_only() -> None:
    seen: list[dict] = []

    def list_pods(**kwargs: Any) -> _Response:
        seen.append(kwargs)
        assert len(seen) <= 2, "the lister asked for the first page again: it dropped the continue token"
        if "_continue" not in kwargs:
            return _Response({"items": [{"n": 1}, {"n": 2}], "metadata": {"continue": "t1"}})
        return _Response({"items": [{"n": 3}], "metadata": {}})

    lister = api_lister(None, calls={"pods": list_pods})
    assert [item["n"] for item in lister("pods")] == [1, 2, 3]
    assert [call.get("_continue") for call in seen] == [None, "t1"]
    assert all(call["field_selector"] == "spec.nodeName!=" and call["limit"] == 500 for call in seen)
    assert all(call["_preload_content"] is False for call in seen)


def test_request_timeout_seconds_bounds_the_whole_list_not_each_page() -> None:
    clock = FakeClock(0.0)
    timeouts: list[float] = []

    def slow_pods(**kwargs: Any) -> _Response:
        timeouts.append(kwargs["_request_timeout"])
        clock.advance(3)  # each page takes 3 s of an API that answers slowly
        return _Response({"items": [{"n": len(timeouts)}], "metadata": {"continue": f"t{len(timeouts)}"}})

    lister = api_lister(None, timeout_seconds=5, calls={"pods": slow_pods}, now=clock.time)
    with pytest.raises(
        SourceError, match=r"list pods: not done within request_timeout_seconds \(5 s\)"
    ) as err:
        list(lister("pods"))
    assert timeouts == [5, 2] and err.value.retryable  # each page gets what is left


def test_a_client_with_default_retries_gets_bounded_ones() -> None:
    from kubernetes.client import ApiClient, Configuration  # noqa: PLC0415

    with ApiClient(Configuration()) as default, ApiClient(Configuration()) as chosen:
        chosen.configuration.retries = False  # the caller said
        api_lister(default), api_lister(chosen)
        retries = default.rest_client.pool_manager.connection_pool_kw["retries"]
        assert (retries.read, retries.connect, retries.status, retries.retry_after_max) == (0, 0, 2, 1)
        assert "retries" not in chosen.rest_client.pool_manager.connection_pool_kw


@pytest.mark.parametrize(
    ("status", "message", "retryable"),
    [
        (403, 'cannot list resource "pods" .*kubernetes-inventory-rbac.yaml', False),
        (401, "rejected serve's credentials: an expired or revoked token", False),
        (410, "continue token expired", True),
        (429, "HTTP 429", True),
        (500, "HTTP 500", True),
    ],
)
def test_api_errors_say_what_to_do(status: int, message: str, retryable: bool) -> None:
    def fail(**kwargs: Any) -> _Response:
        exc = ApiException(status=status, reason="Failure")
        exc.body = json.dumps({"kind": "Status", "message": 'User "x" cannot list resource "pods"'})
        raise exc

    with pytest.raises(SourceError, match=message) as err:
        list(api_lister(None, calls={"pods": fail})("pods"))
    assert err.value.retryable is retryable


def test_assignments_read_the_exported_labels_prometheus_renamed() -> None:
    rows = [
        # Scraped through a Kubernetes service discovery: the target's own pod label wins `pod`.
        {"Hostname": "g1", "gpu": "0", "namespace": "gpu-operator", "pod": "dcgm-exporter-x",
         "exported_namespace": "serving", "exported_pod": "llama-7f9c-1"},
        # A free GPU carries only the exporter's own pod, which holds no GPU: it places nothing.
        {"Hostname": "g1", "gpu": "1", "namespace": "gpu-operator", "pod": "dcgm-exporter-x"},
    ]  # fmt: skip
    assert assignments_from_labels(rows) == [
        Assignment("g1", 0, "", "serving", "llama-7f9c-1"),
        Assignment("g1", 1, "", "gpu-operator", "dcgm-exporter-x"),
    ]


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

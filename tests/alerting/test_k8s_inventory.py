"""Reading the Kubernetes API's objects into an inventory: nodes, GPUs and racks, workloads and their pods,
GPU requests and assignments, spare GPUs, aliases, and the lister's pages, timeouts and errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from alerting.faults import classify
from alerting.k8s_assignments import Assignment, assignments_from_labels
from alerting.k8s_client import api_lister
from alerting.k8s_inventory import KubernetesInventory, node_gpus, pod_gpus
from alerting.topology import UNKNOWN, locate
from gpuwarden.clock import FakeClock
from gpuwarden.errors import SourceError
from gpuwarden.model import WorkloadKind, WorkloadRef
from tests.alerting.k8s_objects import SERVICE, FakeApi, inventory, node, pod, serving_cluster


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


def test_gpu_counts_of_nodes_gone_from_the_list_are_forgotten_but_a_lost_pods_node_keeps_its_own() -> None:
    # Each node the autoscaler made got a new name, and its last GPU count stayed for good: serve's memory
    # grew with every node the cluster ever had.
    api, clock = FakeApi(), FakeClock(1000.0)
    api.objects["nodes"] = [node("g1"), node("g2")]
    api.objects["pods"] = [pod("a", "p1", "g1", 8)]
    reader = inventory(api, clock)
    reader.read()
    for i in range(100):
        api.objects["nodes"][1] = node(f"scaled-{i}")
        reader.read()
    assert sorted(reader._gpu_counts) == ["g1", "scaled-99"]
    # g1 leaves the list with its pod lost: kept, so is g1's count, for g1 registered again without GPUs
    api.objects["nodes"] = [node("scaled-99")]
    api.objects["pods"] = []
    reader.read()
    assert sorted(reader._gpu_counts) == ["g1", "scaled-99"]
    api.objects["nodes"].append(node("g1", 0))
    g1 = reader.read().node("g1")
    assert g1 is not None and g1.gpu_count == 8

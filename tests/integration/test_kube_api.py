"""The local Kubernetes API stand-in answers the official client the way gpuwarden's readers need."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiClient, AppsV1Api, BatchV1Api, Configuration, CoreV1Api
from kubernetes.client.exceptions import ApiException

from tests.integration.kube_api import TOKEN, KubeApi, kube_api

pytestmark = pytest.mark.integration

GPU_LABELS = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3", "topology.kubernetes.io/zone": "rack-01"}


def node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {**GPU_LABELS, "kubernetes.io/hostname": name}},
        "status": {"capacity": {"nvidia.com/gpu": "8", "cpu": "96"}},
    }


def owner(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }


def pod(name: str, namespace: str, node_name: str, controller: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "ownerReferences": [owner(controller)]},
        "spec": {"nodeName": node_name, "containers": [{"name": "main", "image": "trainer:1"}]},
    }


def workload(api_version: str, kind: str, name: str, namespace: str, **meta: Any) -> dict[str, Any]:
    template = {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "main"}]}}
    spec: dict[str, Any] = {"template": template}
    if kind != "Job":
        spec["selector"] = {"matchLabels": {"app": name}}
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": spec,
    }


def seed(kube: KubeApi) -> dict[str, dict[str, Any]]:
    """Two GPU nodes, a Deployment's pods in `training`, a StatefulSet's and a Job's in `inference`."""
    made = {name: kube.create(node(name)) for name in ("gpu-node-1", "gpu-node-2")}
    made["trainer"] = kube.create(workload("apps/v1", "Deployment", "trainer", "training"))
    replica_set = workload("apps/v1", "ReplicaSet", "trainer-7d9f8", "training")
    replica_set["metadata"]["ownerReferences"] = [owner(made["trainer"])]
    made["trainer-7d9f8"] = kube.create(replica_set)
    made["vllm"] = kube.create(workload("apps/v1", "StatefulSet", "vllm", "inference"))
    made["eval"] = kube.create(workload("batch/v1", "Job", "eval", "inference"))
    for name, namespace, node_name, controller in [
        ("trainer-7d9f8-abcde", "training", "gpu-node-1", "trainer-7d9f8"),
        ("trainer-7d9f8-fghij", "training", "gpu-node-2", "trainer-7d9f8"),
        ("vllm-0", "inference", "gpu-node-2", "vllm"),
        ("eval-x7k2p", "inference", "gpu-node-1", "eval"),
    ]:
        made[name] = kube.create(pod(name, namespace, node_name, made[controller]))
    return made


def client_config(url: str, retries: bool | None = False) -> Configuration:
    """A client configuration for ``url``; ``retries=False`` lets every failure through."""
    cfg = Configuration()
    cfg.host = url
    cfg.api_key = {"authorization": f"Bearer {TOKEN}"}
    cfg.retries = retries
    return cfg


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KubeApi, ApiClient]]:
    """A seeded stand-in that the tests using it only read."""
    with kube_api(tmp_path_factory.mktemp("kube-api")) as kube, ApiClient(client_config(kube.url)) as client:
        seed(kube)
        yield kube, client


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[KubeApi]:
    """A fresh, empty stand-in for a test that changes it."""
    with kube_api(tmp_path) as api:
        yield api


def items(response: Any) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(response.data)["items"]
    return listed


def names(response: Any) -> set[str]:
    return {item["metadata"]["name"] for item in items(response)}


LISTS = [
    pytest.param(CoreV1Api, "list_node", {"gpu-node-1", "gpu-node-2"}, id="nodes"),
    pytest.param(
        CoreV1Api,
        "list_pod_for_all_namespaces",
        {"trainer-7d9f8-abcde", "trainer-7d9f8-fghij", "vllm-0", "eval-x7k2p"},
        id="pods",
    ),
    pytest.param(AppsV1Api, "list_replica_set_for_all_namespaces", {"trainer-7d9f8"}, id="replicasets"),
    pytest.param(AppsV1Api, "list_deployment_for_all_namespaces", {"trainer"}, id="deployments"),
    pytest.param(AppsV1Api, "list_stateful_set_for_all_namespaces", {"vllm"}, id="statefulsets"),
    pytest.param(BatchV1Api, "list_job_for_all_namespaces", {"eval"}, id="jobs"),
]


@pytest.mark.parametrize(("api", "method", "expected"), LISTS)
def test_a_list_returns_every_object_of_its_kind(
    fleet: tuple[KubeApi, ApiClient], api: type[Any], method: str, expected: set[str]
) -> None:
    response = getattr(api(fleet[1]), method)(_preload_content=False)
    assert response.status == 200
    assert names(response) == expected


@pytest.mark.parametrize(("api", "method", "expected"), LISTS)
def test_a_list_with_a_limit_returns_everything_in_one_page(
    fleet: tuple[KubeApi, ApiClient], api: type[Any], method: str, expected: set[str]
) -> None:
    response = getattr(api(fleet[1]), method)(limit=1, _preload_content=False)
    assert names(response) == expected
    assert "continue" not in json.loads(response.data)["metadata"]


def test_selectors_are_ignored_so_callers_filter_client_side(fleet: tuple[KubeApi, ApiClient]) -> None:
    core = CoreV1Api(fleet[1])
    on_node_1 = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=gpu-node-1")
    assert len(on_node_1.items) == 4
    labelled = core.list_node(label_selector="kubernetes.io/hostname=gpu-node-2")
    assert {n.metadata.name for n in labelled.items} == {"gpu-node-1", "gpu-node-2"}


def test_a_namespaced_list_returns_only_that_namespace(fleet: tuple[KubeApi, ApiClient]) -> None:
    response = CoreV1Api(fleet[1]).list_namespaced_pod("inference", _preload_content=False)
    assert names(response) == {"vllm-0", "eval-x7k2p"}


def test_typed_nodes_keep_gpu_capacity_labels_and_server_metadata(fleet: tuple[KubeApi, ApiClient]) -> None:
    nodes = CoreV1Api(fleet[1]).list_node()
    assert nodes.kind == "NodeList"
    for item in nodes.items:
        assert item.status.capacity["nvidia.com/gpu"] == "8"
        assert item.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert item.metadata.uid
        assert item.metadata.creation_timestamp is not None
        assert int(item.metadata.resource_version) > 0
    assert len({item.metadata.uid for item in nodes.items}) == 2


def test_pods_lead_through_owner_uids_to_their_deployment(fleet: tuple[KubeApi, ApiClient]) -> None:
    pods = CoreV1Api(fleet[1]).list_namespaced_pod("training").items
    replica_sets = {
        rs.metadata.uid: rs for rs in AppsV1Api(fleet[1]).list_namespaced_replica_set("training").items
    }
    deployments = {
        d.metadata.uid: d for d in AppsV1Api(fleet[1]).list_namespaced_deployment("training").items
    }
    assert {p.spec.node_name for p in pods} == {"gpu-node-1", "gpu-node-2"}
    for p in pods:
        (rs_ref,) = p.metadata.owner_references
        replica_set = replica_sets[rs_ref.uid]
        (deployment_ref,) = replica_set.metadata.owner_references
        assert deployments[deployment_ref.uid].metadata.name == "trainer"


def test_kubeconfig_from_the_helper_reaches_the_stand_in(
    fleet: tuple[KubeApi, ApiClient], tmp_path: Path
) -> None:
    cfg = Configuration()
    path = fleet[0].write_kubeconfig(tmp_path / "kubeconfig")
    kubernetes.config.load_kube_config(config_file=str(path), client_configuration=cfg)
    assert cfg.host == fleet[0].url
    assert cfg.auth_settings()["BearerToken"]["value"] == f"Bearer {TOKEN}"
    with ApiClient(cfg) as client:
        assert names(CoreV1Api(client).list_node(_preload_content=False)) == {"gpu-node-1", "gpu-node-2"}


def test_a_deleted_pod_is_gone_from_lists_and_reads(kube: KubeApi) -> None:
    seed(kube)
    kube.delete("v1", "Pod", "vllm-0", namespace="inference")
    with ApiClient(client_config(kube.url)) as client:
        core = CoreV1Api(client)
        assert "vllm-0" not in names(core.list_pod_for_all_namespaces(_preload_content=False))
        with pytest.raises(ApiException) as raised:
            core.read_namespaced_pod("vllm-0", "inference")
        assert raised.value.status == 404
        assert json.loads(raised.value.body)["reason"] == "NotFound"
        core.delete_namespaced_pod("eval-x7k2p", "inference")
        assert names(core.list_namespaced_pod("inference", _preload_content=False)) == set()


def test_deleting_an_owner_leaves_its_pods_as_there_is_no_garbage_collector(kube: KubeApi) -> None:
    seed(kube)
    kube.delete("batch/v1", "Job", "eval", namespace="inference")
    assert kube.get("v1", "Pod", "eval-x7k2p", namespace="inference")["metadata"]["ownerReferences"]


def test_a_patch_merges_into_the_node_and_bumps_its_resource_version(kube: KubeApi) -> None:
    before = kube.create(node("gpu-node-1"))
    with ApiClient(client_config(kube.url)) as client:
        core = CoreV1Api(client)
        core.patch_node(
            "gpu-node-1", {"spec": {"unschedulable": True}, "metadata": {"labels": {"drained": "x"}}}
        )
        after = core.read_node("gpu-node-1")
    assert after.spec.unschedulable is True
    assert after.metadata.labels == {**before["metadata"]["labels"], "drained": "x"}
    assert after.metadata.uid == before["metadata"]["uid"]
    assert int(after.metadata.resource_version) > int(before["metadata"]["resourceVersion"])


def test_injected_failures_raise_429_then_the_next_call_succeeds(kube: KubeApi) -> None:
    kube.create(node("gpu-node-1"))
    kube.fail_next(2)
    with ApiClient(client_config(kube.url, retries=False)) as client:
        core = CoreV1Api(client)
        for _ in range(2):
            with pytest.raises(ApiException) as raised:
                core.list_node(_preload_content=False)
            assert raised.value.status == 429
            assert raised.value.headers["Retry-After"] == "1"
            status = json.loads(raised.value.body)
            assert (status["kind"], status["reason"], status["code"]) == ("Status", "TooManyRequests", 429)
        assert names(core.list_node(_preload_content=False)) == {"gpu-node-1"}


def test_a_refused_create_stores_nothing(kube: KubeApi) -> None:
    kube.fail_next(1, status=503)
    with ApiClient(client_config(kube.url, retries=False)) as client:
        core = CoreV1Api(client)
        with pytest.raises(ApiException) as raised:
            core.create_node(node("gpu-node-1"))
        assert raised.value.status == 503
        assert core.list_node().items == []


def test_the_default_client_retries_a_429_get_after_retry_after(kube: KubeApi) -> None:
    kube.create(node("gpu-node-1"))
    kube.fail_next(1)
    with ApiClient(client_config(kube.url, retries=None)) as client:
        started = time.monotonic()
        response = CoreV1Api(client).list_node(_preload_content=False)
    assert names(response) == {"gpu-node-1"}
    assert time.monotonic() - started >= 1.0  # it slept as Retry-After said

"""The Kubernetes inventory through the official client against the local API stand-in (kmock, over real
HTTP; no real cluster can run here), and `gpuwarden serve` using it to place a node failure on a service."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration

from alerting.inventory_file import load_inventory
from alerting.k8s_client import api_lister
from alerting.k8s_inventory import KubernetesInventory
from gpuwarden.cli.inventories import Inventories, kubernetes_inventory
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.config import KubernetesInventoryConfig
from gpuwarden.errors import ConfigError, SourceError
from gpuwarden.model import WorkloadKind, WorkloadRef
from tests.integration import http_probe
from tests.integration.gpuwarden_server import (
    AUTH,
    gpuwarden_binary,
    gpuwarden_serve,
    serve_metric,
    simulated_exporter_argv,
)
from tests.integration.kube_api import KubeApi, kube_api
from tests.integration.prometheus_queries import query, wait_for
from tests.integration.servers import free_port, prometheus_argv, running

pytestmark = pytest.mark.integration

LLAMA = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "llama", "k1")


def gpu_node(name: str, rack: str, ready: str = "True") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"topology.kubernetes.io/rack": rack}},
        "spec": {},
        "status": {
            "capacity": {"cpu": "96", "nvidia.com/gpu": "8"},
            "allocatable": {"cpu": "95", "nvidia.com/gpu": "8"},
            "conditions": [{"type": "Ready", "status": ready}],
        },
    }


def owned(obj: dict[str, Any]) -> list[dict[str, Any]]:
    meta = obj["metadata"]
    ref = {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"]}
    return [{**ref, "controller": True}]


def gpu_pod(name: str, namespace: str, node: str, gpus: int, owner: dict[str, Any]) -> dict[str, Any]:
    container = {"name": "main", "image": "vllm:1", "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}
    labels = {"app.kubernetes.io/name": "llama-70b"}
    if owner["kind"] == "ReplicaSet":  # the Deployment controller's hash, the suffix of the ReplicaSet's name
        labels["pod-template-hash"] = owner["metadata"]["name"].rsplit("-", 1)[1]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": owned(owner)},
        "spec": {"nodeName": node, "containers": [container]},
        "status": {"phase": "Running"},
    }


def seed(kube: KubeApi) -> None:
    """Four 8-GPU nodes in racks r1 and r2; llama, a Deployment, runs one 8-GPU replica on each of g1-g4;
    a training Job's pod holds 4 GPUs of a fifth node."""
    for i in range(1, 6):
        kube.create(gpu_node(f"g{i}", "r1" if i <= 2 else "r2"))
    deployment = kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "llama", "namespace": "serving"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "llama"}}},
        }
    )
    replica_set = kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "llama-7f9c", "namespace": "serving", "ownerReferences": owned(deployment)},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "llama"}}},
        }
    )
    for i in range(1, 5):
        kube.create(gpu_pod(f"llama-7f9c-{i}", "serving", f"g{i}", 8, replica_set))
    job = kube.create(
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "finetune", "namespace": "train"}}
    )
    kube.create(gpu_pod("finetune-x1", "train", "g5", 4, job))


@pytest.fixture(scope="module")
def _seeded_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApi]:
    """One seeded stand-in for the module: a stand-in is a Python process of its own, seconds to start."""
    with kube_api(tmp_path_factory.mktemp("kube-api")) as api:
        seed(api)
        yield api


@pytest.fixture
def kube(_seeded_kube: KubeApi) -> Iterator[KubeApi]:
    """The seeded stand-in as every test found it: no failure left over from the last test (serve may stop
    before it met all those a test injected), and no object created or patched by this one."""
    _seeded_kube.fail_next(0)
    before = _resource_version(_seeded_kube)
    yield _seeded_kube
    _seeded_kube.fail_next(0)
    assert _resource_version(_seeded_kube) == before, "a test changed the shared stand-in's objects"


def _resource_version(kube: KubeApi) -> str:
    """The stand-in's one counter, which every create and merge patch bumps."""
    listed = http_probe.get(f"{kube.url}/api/v1/nodes", timeout=5).json()
    return str(listed["metadata"]["resourceVersion"])


def client(kubeconfig: Path, retries: bool | None = None) -> ApiClient:
    cfg = Configuration()
    kube_config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.retries = retries
    return ApiClient(cfg)


def test_the_official_client_reads_nodes_racks_and_the_pods_holding_gpus(
    kube: KubeApi, tmp_path: Path
) -> None:
    with client(kube.write_kubeconfig(tmp_path / "kubeconfig")) as api:
        inv = KubernetesInventory(FakeClock(0.0), api_lister(api), cluster="k1").read()
    assert [(n.name, n.rack, n.gpu_count) for n in inv.nodes_in("k1", "r2")] == [
        ("g3", "r2", 8),
        ("g4", "r2", 8),
        ("g5", "r2", 8),
    ]
    by_ref = {w.ref: w for w in inv.workloads()}
    assert set(by_ref) == {LLAMA, WorkloadRef(WorkloadKind.TRAINING_JOB, "train", "finetune", "k1")}
    assert [min(u) for u in by_ref[LLAMA].units] == [("k1", f"g{i}", 0) for i in range(1, 5)]
    assert inv.find_workload(WorkloadKind.POD, "llama-7f9c-3", "serving") == LLAMA
    assert inv.spare_gpus("k1") == 4  # g5's other four


def test_a_429_or_an_unreachable_api_is_a_retryable_source_error(kube: KubeApi, tmp_path: Path) -> None:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    with client(kubeconfig, retries=False) as api:
        reader = KubernetesInventory(FakeClock(0.0), api_lister(api), cluster="k1")
        kube.fail_next(1, 429)
        with pytest.raises(SourceError, match="list nodes: HTTP 429") as err:
            reader.read()
        assert err.value.retryable
        assert len(reader.read().workloads()) == 2  # the next read works
    # The default client honours Retry-After on a 429 by itself (urllib3's Retry): a short burst passes.
    with client(kubeconfig) as api:
        kube.fail_next(2, 429)
        assert len(KubernetesInventory(FakeClock(0.0), api_lister(api), cluster="k1").read().workloads()) == 2
    cfg = Configuration()
    cfg.host, cfg.retries = "http://127.0.0.1:9", False  # nothing listens on the discard port
    with ApiClient(cfg) as api, pytest.raises(SourceError, match="list nodes"):
        KubernetesInventory(FakeClock(0.0), api_lister(api, timeout_seconds=2), cluster="k1").read()


def test_a_410_gone_lists_again_at_once_and_is_counted_and_a_second_keeps_the_last_inventory(
    kube: KubeApi, tmp_path: Path
) -> None:
    # An expired continue token (410 Gone) failed the refresh, and the inventory waited a whole refresh
    # interval (60 s) to be listed again.
    engine = SimpleNamespace(counters={"inventory_refresh_failures": 0, "inventory_relists": 0})
    with client(kube.write_kubeconfig(tmp_path / "kubeconfig")) as api:
        reader = KubernetesInventory(FakeClock(0.0), api_lister(api), cluster="k1")
        inventories = Inventories([], [(reader, "kubernetes")], SystemClock())
        kube.fail_next(1, 410)
        assert inventories.read(engine)  # type: ignore[arg-type]
        first = inventories.latest["kubernetes"]
        assert len(first.workloads()) == 2 and engine.counters == {
            "inventory_refresh_failures": 0,
            "inventory_relists": 1,
        }
        kube.fail_next(2, 410)  # expired again on the relist: the refresh fails, the last read stays
        assert not inventories.read(engine)  # type: ignore[arg-type]
        assert inventories.latest["kubernetes"] is first
        assert engine.counters == {"inventory_refresh_failures": 1, "inventory_relists": 2}
        assert inventories.read(engine)  # type: ignore[arg-type]  # the next refresh lists again


def test_an_api_that_accepts_connections_and_never_answers_fails_the_read_within_the_timeout() -> None:
    # The kernel completes the handshake (listen backlog); nothing ever reads or answers.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blackhole:
        port = free_port()
        blackhole.bind(("127.0.0.1", port))
        blackhole.listen(16)
        cfg = Configuration()
        cfg.host = f"http://127.0.0.1:{port}"  # urllib3's default retries, as serve's client has
        with ApiClient(cfg) as api:
            reader = KubernetesInventory(FakeClock(0.0), api_lister(api, timeout_seconds=2), cluster="k1")
            started = time.monotonic()
            with pytest.raises(SourceError, match="list nodes") as err:
                reader.read()
    assert time.monotonic() - started < 3.5  # one try of 2 s; urllib3's three retries made it 8 s
    assert "Read timed out" in str(err.value)


def test_serve_places_a_node_failure_on_the_service_whose_replica_ran_there(
    kube: KubeApi, tmp_path: Path
) -> None:
    config = tmp_path / "gpuwarden.yaml"
    inventory = {"cluster": "k1", "kubeconfig": str(kube.write_kubeconfig(tmp_path / "kubeconfig"))}
    config.write_text(
        yaml.safe_dump({"alerting": {"kubernetes_inventory": inventory, "inventory_refresh_seconds": 1}})
    )
    with gpuwarden_serve(tmp_path, str(tmp_path / "gw.db"), extra_args=["--config", str(config)]) as (url, _):
        assert serve_metric(url, "gpuwarden_inventory_workloads") == 2
        alerts = [
            {"labels": {"alertname": "NodeDown", "node": "g2"}},
            # dcgm-exporter style: the pod labels of the GPU's kubelet assignment, no cluster, no rack.
            {
                "labels": {"alertname": "GpuXid", "xid": "79", "Hostname": "g3", "gpu": "5"}
                | pod("llama-7f9c-3")
            },
        ]
        assert (
            http_probe.post(f"{url}/api/v2/alerts", json=alerts, headers=AUTH, timeout=10).status_code == 200
        )
        incidents = http_probe.get(f"{url}/api/v1/incidents", timeout=10).json()
        by_kind = {i["root_cause"]["kind"]: i for i in incidents}
        assert set(by_kind) == {"node_down", "gpu_lost"}, incidents
        assert by_kind["node_down"]["root_cause"]["target"] | {"type": "node"} == {
            "type": "node",
            "cluster": "k1",  # from the inventory: the alert carried neither cluster nor rack
            "rack": "r1",
            "name": "g2",
        }
        (xid,) = http_probe.get(f"{url}/api/v1/incidents/{by_kind['gpu_lost']['id']}", timeout=10).json()[
            "alerts"
        ]
        assert xid["recommended_action"] == "restart_node"  # the XID catalog's RESTART_BM for XID 79
        for incident in incidents:
            # One replica of four lost each: ">=25% of a service's capacity lost" is P1.
            assert incident["priority"] == "P1", incident
            # Each took 25% (the service lost 50% across the two, each its own fault: the second says so).
            assert "inference service llama 25% of replicas lost" in incident["title"], incident

        # What serve knows, as an operator asks it: the CLI, and an export that an inventory file can replay.
        cli = [gpuwarden_binary(), "inventory"]
        shown = subprocess.run(
            [*cli, "workloads", "--url", url, "--node", "g2", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        )
        (llama,) = json.loads(shown.stdout)
        assert (llama["kind"], llama["namespace"], llama["name"], len(llama["units"])) == (
            "inference_service",
            "serving",
            "llama",
            4,
        )
        assert "llama-70b" in llama["aliases"] and "llama-7f9c-3" in llama["pods"]
        table = subprocess.run([*cli, "nodes", "--url", url], capture_output=True, text=True, check=True)
        assert "5 nodes; spare GPUs: k1 4" in table.stderr and "source: kubernetes" in table.stderr
        export = subprocess.run([*cli, "export", "--url", url], capture_output=True, text=True, check=True)
        (tmp_path / "snapshot.yaml").write_text(export.stdout)
        snapshot = load_inventory(tmp_path / "snapshot.yaml")
        assert snapshot.find_workload(WorkloadKind.POD, "llama-7f9c-3", "serving") == LLAMA
        assert snapshot.spare_gpus("k1") == 4

        # A list's continue token expired (410 Gone): listed again at once, counted, and no refresh failed.
        kube.fail_next(1, 410)
        wait_for("a relist", lambda: serve_metric(url, "gpuwarden_inventory_relists_total") == 1, 30)
        assert serve_metric(url, "gpuwarden_inventory_refresh_failures_total") == 0

        # The API answers 429 for a while: the refresh fails, serve keeps the last inventory and runs on.
        kube.fail_next(8, 429)
        wait_for(
            "a failed refresh",
            lambda: serve_metric(url, "gpuwarden_inventory_refresh_failures_total") >= 1,
            30,
        )
        assert serve_metric(url, "gpuwarden_inventory_workloads") == 2
        assert http_probe.get(f"{url}/healthz", timeout=5).status_code == 200


def pod(name: str) -> dict[str, str]:
    return {"namespace": "serving", "pod": name, "container": "main"}


def test_serve_starts_without_the_api_and_refuses_a_missing_kubeconfig(tmp_path: Path) -> None:
    config = tmp_path / "gpuwarden.yaml"
    unreachable = tmp_path / "kubeconfig"
    with kube_api(tmp_path) as kube:
        kube.write_kubeconfig(unreachable)  # its server stops with this block
    inventory = {"cluster": "k1", "kubeconfig": str(unreachable)}
    config.write_text(yaml.safe_dump({"alerting": {"kubernetes_inventory": inventory}}))
    with gpuwarden_serve(tmp_path, str(tmp_path / "gw.db"), extra_args=["--config", str(config)]) as (url, _):
        assert serve_metric(url, "gpuwarden_inventory_workloads") == 0
    assert "kubernetes inventory: cannot read it" in (tmp_path / "serve.log").read_text()

    # A kubeconfig that is not there: serve refuses to start, naming the setting, and creates no store.
    inventory["kubeconfig"] = str(tmp_path / "missing")
    config.write_text(yaml.safe_dump({"alerting": {"kubernetes_inventory": inventory}}))
    done = subprocess.run(
        [gpuwarden_binary(), "serve", "--db", str(tmp_path / "x.db"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "GPUWARDEN_API_TOKEN": "t"},
        check=False,
    )
    assert done.returncode == 78
    message = " ".join(done.stderr.split())
    assert "alerting.kubernetes_inventory.kubeconfig" in message and "missing is not a file" in message, (
        message
    )
    assert not (tmp_path / "x.db").exists()


def test_gpu_indices_of_pods_sharing_a_node_come_from_the_exporter_through_prometheus(
    tmp_path: Path,
) -> None:
    """The whole attribution chain: the simulated exporter labels each GPU with the pod its kubelet assigned
    (llm-chat-0..3 on GPUs 4-5 of node-01 and node-02, llm-embed-0..1 on GPU 6), a real Prometheus scrapes
    it, and the inventory places the API's pods, which share their nodes, on exactly those GPUs."""
    port, prom_port = free_port(), free_port()
    prom = f"http://127.0.0.1:{prom_port}"
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\nscrape_configs:\n  - job_name: dcgm\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    exporter_argv = simulated_exporter_argv("2x8", port)
    prom_argv = prometheus_argv(tmp_path / "prometheus.yml", prom_port)
    with (
        kube_api(tmp_path) as kube,
        running(exporter_argv, f"http://127.0.0.1:{port}/healthz", tmp_path / "exporter.log"),
        running(prom_argv, f"{prom}/-/ready", tmp_path / "prometheus.log"),
    ):
        for name in ("node-01", "node-02"):
            kube.create(gpu_node(name, "r1"))
        for service, placed in (
            ("llm-chat", ["node-01", "node-01", "node-02", "node-02"]),
            ("llm-embed", ["node-01", "node-02"]),
        ):
            owner = kube.create(
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "metadata": {"name": service, "namespace": "inference"},
                    "spec": {"replicas": len(placed), "selector": {"matchLabels": {"app": service}}},
                }
            )
            for replica, node in enumerate(placed):
                kube.create(gpu_pod(f"{service}-{replica}", "inference", node, 1, owner))
        settings = KubernetesInventoryConfig(
            cluster="k1",
            kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            gpu_assignment_url=prom,
        )
        reader = kubernetes_inventory(settings, SystemClock())  # what serve builds from the settings
        wait_for(
            "the exporter's pod labels in Prometheus",
            lambda: len(query(prom, 'DCGM_FI_DEV_GPU_TEMP{pod!=""}')) == 6,
            30,
        )
        inv = reader.read()
        reader.close()
    placed = {w.ref.name: sorted(sorted(u) for u in w.units) for w in inv.workloads()}
    assert placed == {
        "llm-chat": [
            [("k1", "node-01", 4)],
            [("k1", "node-01", 5)],
            [("k1", "node-02", 4)],
            [("k1", "node-02", 5)],
        ],
        "llm-embed": [[("k1", "node-01", 6)], [("k1", "node-02", 6)]],
    }
    assert reader.ambiguous_pods == 0  # without the exporter's labels all six would be guesses
    assert len(inv.node("node-01").gpu_uuids) == 8  # type: ignore[union-attr]
    assert inv.gpu_by_uuid(inv.node("node-02").gpu_uuids[5]) == ("k1", "node-02", 5)  # type: ignore[union-attr]


def test_a_kubeconfig_without_the_named_context_is_a_config_error_naming_both(
    kube: KubeApi, tmp_path: Path
) -> None:
    settings = KubernetesInventoryConfig(
        cluster="k1", kubeconfig=str(kube.write_kubeconfig(tmp_path / "kubeconfig")), context="prod-east"
    )
    with pytest.raises(ConfigError) as err:
        kubernetes_inventory(settings, SystemClock())
    message = str(err.value)
    assert "alerting.kubernetes_inventory.kubeconfig" in message and "context prod-east" in message
    assert str(tmp_path / "kubeconfig") in message


def test_serve_combines_a_training_inventory_with_the_kubernetes_one(kube: KubeApi, tmp_path: Path) -> None:
    """A Slurm training cluster (here as its inventory file) beside the Kubernetes inference cluster: one
    serve places alerts on both, and a Kubernetes outage leaves the training part alone."""
    training = tmp_path / "training.yaml"
    training.write_text(
        yaml.safe_dump(
            {
                "nodes": [{"name": f"t{i}", "cluster": "slurm-a", "rack": "tr1", "gpus": 8} for i in (1, 2)],
                "workloads": [
                    {
                        "kind": "training_job",
                        "name": "llm-70b (41)",
                        "aliases": ["41"],
                        "units": [["t1:0"], ["t2:0"]],
                    }
                ],
            }
        )
    )
    inventory = {"cluster": "k1", "kubeconfig": str(kube.write_kubeconfig(tmp_path / "kubeconfig"))}
    settings = {
        "inventory_file": str(training),
        "kubernetes_inventory": inventory,
        "inventory_refresh_seconds": 1,
    }
    config = tmp_path / "gpuwarden.yaml"
    config.write_text(yaml.safe_dump({"alerting": settings}))
    with gpuwarden_serve(tmp_path, str(tmp_path / "gw.db"), extra_args=["--config", str(config)]) as (url, _):
        shown = http_probe.get(f"{url}/api/v1/inventory", timeout=10).json()
        assert shown["about"]["source"] == f"file {training} + kubernetes"
        names = {w["name"] for w in shown["workloads"]}
        assert names == {"llm-70b (41)", "llama", "finetune"}
        alerts = [
            {"labels": {"alertname": "NodeDown", "node": "t1"}},  # training cluster
            {"labels": {"alertname": "NodeDown", "node": "g4"}},  # inference cluster
        ]
        assert (
            http_probe.post(f"{url}/api/v2/alerts", json=alerts, headers=AUTH, timeout=10).status_code == 200
        )
        titles = sorted(i["title"] for i in http_probe.get(f"{url}/api/v1/incidents", timeout=10).json())
        assert any("llm-70b (41)" in t for t in titles) and any("llama" in t for t in titles), titles
        never = 'gpuwarden_inventory_last_failure_timestamp_seconds{source="kubernetes"} 0.0'
        metrics = http_probe.get(f"{url}/metrics", timeout=5).text
        assert 'gpuwarden_inventory_last_read_timestamp_seconds{source="kubernetes"}' in metrics
        assert never in metrics
        kube.fail_next(40, 503)  # the Kubernetes API goes away for a while
        wait_for(
            "a failed refresh",
            lambda: serve_metric(url, "gpuwarden_inventory_refresh_failures_total") >= 1,
            30,
        )
        after = http_probe.get(f"{url}/api/v1/inventory", timeout=10).json()
        assert {w["name"] for w in after["workloads"]} == names  # both parts kept
        kubernetes = next(p for p in after["about"]["refreshed_sources"] if p["name"] == "kubernetes")
        assert kubernetes["stale"] and after["about"]["stale"]
        assert never not in http_probe.get(f"{url}/metrics", timeout=5).text

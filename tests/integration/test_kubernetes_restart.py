"""`gpuwarden serve` over the Kubernetes API stand-in (kmock, real HTTP), restarted while a node deleted from
the API keeps its incident open, or deleted while serve was down: the restarted serve still knows the node's
place and the replica it took."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration import http_probe
from tests.integration.gpuwarden_server import AUTH, gpuwarden_serve
from tests.integration.kube_api import KubeApi, kube_api
from tests.integration.prometheus_queries import wait_for

pytestmark = pytest.mark.integration


def _owned(obj: dict[str, Any]) -> list[dict[str, Any]]:
    meta = obj["metadata"]
    return [{"apiVersion": obj["apiVersion"], "kind": obj["kind"], "name": meta["name"], "uid": meta["uid"]}]


def _seed(kube: KubeApi) -> None:
    """g1-g4, 8 GPUs each in rack r1; llama, a Deployment, runs one 8-GPU replica on each."""
    deployment = kube.create(
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "llama", "namespace": "serving"}}
    )
    replicas = kube.create(
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "llama-7f9c", "namespace": "serving", "ownerReferences": _owned(deployment)},
        }
    )
    for i in range(1, 5):
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": f"g{i}", "labels": {"topology.kubernetes.io/rack": "r1"}},
                "status": {
                    "capacity": {"nvidia.com/gpu": "8"},
                    "allocatable": {"nvidia.com/gpu": "8"},
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            }
        )
        limits = {"nvidia.com/gpu": "8"}
        kube.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": f"llama-7f9c-{i}",
                    "namespace": "serving",
                    "labels": {"pod-template-hash": "7f9c"},
                    "ownerReferences": _owned(replicas),
                },
                "spec": {"nodeName": f"g{i}", "containers": [{"name": "m", "resources": {"limits": limits}}]},
                "status": {"phase": "Running"},
            }
        )


def _g2_state(url: str) -> str:
    """g2's state as serve's inventory says it (its ``about``), empty where g2 is not listed."""
    about = http_probe.get(f"{url}/api/v1/inventory", timeout=10).json()["about"]
    return next((str(n["state"]) for n in about["node_states"] if n["name"] == "g2"), "")


def test_a_node_deleted_while_its_incident_is_open_keeps_its_place_and_replica_across_a_serve_restart(
    tmp_path: Path,
) -> None:
    # Before, the deleted node and the replica lost with it were kept in serve's memory only: the restarted
    # serve made the incident "node g2 is down: 1 node, 1 GPU", P2, its root a node of no cluster or rack.
    with kube_api(tmp_path) as kube:
        _seed(kube)
        config = tmp_path / "gpuwarden.yaml"
        inventory = {"cluster": "k1", "kubeconfig": str(kube.write_kubeconfig(tmp_path / "kubeconfig"))}
        config.write_text(
            yaml.safe_dump({"alerting": {"kubernetes_inventory": inventory, "inventory_refresh_seconds": 1}})
        )
        db, args = str(tmp_path / "gw.db"), ["--config", str(config)]
        with gpuwarden_serve(tmp_path, db, extra_args=args) as (url, _):
            down = [{"labels": {"alertname": "NodeDown", "node": "g2"}}]
            assert (
                http_probe.post(f"{url}/api/v2/alerts", json=down, headers=AUTH, timeout=10).status_code
                == 200
            )
            kube.delete("v1", "Pod", "llama-7f9c-2", "serving")  # the node deleted, its pod with it
            kube.delete("v1", "Node", "g2")
            wait_for("g2 deleted", lambda: _g2_state(url) == "deleted", 30)
        with gpuwarden_serve(tmp_path, db, "serve-again", extra_args=args) as (url, _):
            xid = [{"labels": {"alertname": "GpuXid", "xid": "79", "Hostname": "g2", "gpu": "3"}}]
            assert (
                http_probe.post(f"{url}/api/v2/alerts", json=xid, headers=AUTH, timeout=10).status_code == 200
            )
            (incident,) = http_probe.get(f"{url}/api/v1/incidents", timeout=10).json()
            assert incident["priority"] == "P1", incident
            assert "inference service llama 25% of replicas lost" in incident["title"], incident
            target = incident["root_cause"]["target"]
            assert (target["cluster"], target["rack"], target["name"]) == ("k1", "r1", "g2"), target


def test_a_node_deleted_while_serve_is_down_is_deleted_at_the_restarted_serves_first_read(
    tmp_path: Path,
) -> None:
    # Before, the restarted serve had never known g2: its incident became "node g2 is down: 1 node, 1 GPU",
    # P2, its root a node of no cluster or rack, and llama's replica lost with g2 was forgotten.
    with kube_api(tmp_path) as kube:
        _seed(kube)
        config = tmp_path / "gpuwarden.yaml"
        inventory = {"cluster": "k1", "kubeconfig": str(kube.write_kubeconfig(tmp_path / "kubeconfig"))}
        config.write_text(
            yaml.safe_dump({"alerting": {"kubernetes_inventory": inventory, "inventory_refresh_seconds": 1}})
        )
        db, args = str(tmp_path / "gw.db"), ["--config", str(config)]
        with gpuwarden_serve(tmp_path, db, extra_args=args) as (url, _):
            down = [{"labels": {"alertname": "NodeDown", "node": "g2"}}]
            assert (
                http_probe.post(f"{url}/api/v2/alerts", json=down, headers=AUTH, timeout=10).status_code
                == 200
            )
            wait_for("g2 listed", lambda: _g2_state(url) == "ready", 30)
        kube.delete("v1", "Pod", "llama-7f9c-2", "serving")  # while no serve runs
        kube.delete("v1", "Node", "g2")
        with gpuwarden_serve(tmp_path, db, "serve-again", extra_args=args) as (url, _):
            wait_for("g2 deleted", lambda: _g2_state(url) == "deleted", 30)
            xid = [{"labels": {"alertname": "GpuXid", "xid": "79", "Hostname": "g2", "gpu": "3"}}]
            assert (
                http_probe.post(f"{url}/api/v2/alerts", json=xid, headers=AUTH, timeout=10).status_code == 200
            )
            (incident,) = http_probe.get(f"{url}/api/v1/incidents", timeout=10).json()
            assert incident["priority"] == "P1", incident
            assert "inference service llama 25% of replicas lost" in incident["title"], incident
            target = incident["root_cause"]["target"]
            assert (target["cluster"], target["rack"], target["name"]) == ("k1", "r1", "g2"), target

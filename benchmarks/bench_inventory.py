"""The Kubernetes inventory's read on a large cluster, in process: one JSON line.

A synthetic cluster as the API would list it: ``--nodes`` 8-GPU nodes (1,250: 10,000 GPUs) in racks of 32;
inference Deployments whose replicas hold 4 GPUs (two per node, so every GPU is held and pods share nodes);
and ``--cpu-pods`` pods without GPUs (the bulk of a real cluster's pods, which the reader must skip). The
list bodies are JSON text, as the official client returns them with ``_preload_content=False``; the timing
covers decoding them (as ``api_lister`` does) and building the inventory (``KubernetesInventory.read``),
the best of ``--repeat``.
``--assigned`` also gives every pod's GPU indices, as the exporter's series in Prometheus would.

The HTTP transfer is left out: on a real cluster it depends on the API server, and the test stand-in (kmock)
would measure itself.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from alerting.k8s_inventory import Assignment, KubernetesInventory, decode_page
from gpuwarden.clock import FakeClock

RACK = "topology.kubernetes.io/rack"


def cluster(nodes: int, cpu_pods: int) -> tuple[dict[str, bytes], list[Assignment]]:
    """The list bodies of nodes, pods and ReplicaSets, and the GPU assignments of the GPU pods."""
    node_items = [
        {
            "metadata": {
                "name": f"gpu-{n:05d}",
                "labels": {"topology.kubernetes.io/rack": f"r{n // 32:03d}"},
            },
            "spec": {},
            "status": {
                "capacity": {"cpu": "128", "memory": "2Ti", "nvidia.com/gpu": "8"},
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
            },
        }
        for n in range(nodes)
    ]
    pods: list[dict[str, Any]] = []
    replica_sets: list[dict[str, Any]] = []
    assigned: list[Assignment] = []
    per_service = 16  # replicas
    for i in range(nodes * 2):
        service, replica = divmod(i, per_service)
        rs = f"svc-{service:04d}-5d8f7c"
        if replica == 0:
            owner = [{"kind": "Deployment", "name": f"svc-{service:04d}", "controller": True}]
            replica_sets.append({"metadata": {"namespace": "serving", "name": rs, "ownerReferences": owner}})
        node, half = divmod(i, 2)
        name = f"{rs}-{replica:05d}"
        pods.append(
            _pod(name, f"gpu-{node:05d}", 4, [{"kind": "ReplicaSet", "name": rs, "controller": True}])
        )
        assigned.extend(
            Assignment(f"gpu-{node:05d}", half * 4 + g, f"GPU-{node}-{half * 4 + g}", "serving", name)
            for g in range(4)
        )
    pods.extend(_pod(f"web-{p:06d}", f"gpu-{p % nodes:05d}", 0, []) for p in range(cpu_pods))
    bodies = {
        "nodes": json.dumps({"items": node_items, "metadata": {}}).encode(),
        "pods": json.dumps({"items": pods, "metadata": {}}).encode(),
        "replicasets": json.dumps({"items": replica_sets, "metadata": {}}).encode(),
    }
    return bodies, assigned


def _pod(name: str, node: str, gpus: int, owners: list[dict[str, Any]]) -> dict[str, Any]:
    limits = {"cpu": "4", "memory": "16Gi", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {
        "metadata": {
            "namespace": "serving",
            "name": name,
            "labels": {"app.kubernetes.io/name": name.rsplit("-", 2)[0]},
            "ownerReferences": owners,
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": "main", "image": "vllm:0.6", "resources": {"limits": limits}}],
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1250)
    parser.add_argument("--cpu-pods", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--assigned", action="store_true", help="give every pod's GPU indices")
    args = parser.parse_args()
    bodies, assigned = cluster(args.nodes, args.cpu_pods)

    def lister(name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = decode_page(bodies[name])["items"]  # as the reader's client does
        return items

    best = float("inf")
    inventory = None
    reader = None
    for _ in range(args.repeat):
        reader = KubernetesInventory(
            FakeClock(0.0), lister, cluster="k1", assignments=(lambda: assigned) if args.assigned else None
        )
        gc.collect()
        start = time.perf_counter()
        inventory = reader.read()
        best = min(best, time.perf_counter() - start)
    assert inventory is not None and reader is not None
    gpu_pods = sum(len(w.units) for w in inventory.workloads())
    print(
        json.dumps(
            {
                "bench": "kubernetes_inventory_read",
                "nodes": args.nodes,
                "gpus": args.nodes * 8,
                "pods": gpu_pods + args.cpu_pods,
                "gpu_pods": gpu_pods,
                "workloads": len(inventory.workloads()),
                "list_bytes": sum(len(b) for b in bodies.values()),
                "assigned": args.assigned,
                "ambiguous_pods": reader.ambiguous_pods,
                "read_seconds": round(best, 3),
                "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


if __name__ == "__main__":
    main()

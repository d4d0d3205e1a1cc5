"""The Kubernetes inventory's read on a large cluster, in process: one JSON line.

A synthetic cluster as the API would list it: ``--nodes`` 8-GPU nodes (1,250: 10,000 GPUs) in racks of 32;
inference Deployments whose replicas hold 4 GPUs (two per node, so every GPU is held and pods share nodes);
and ``--cpu-pods`` pods without GPUs (the bulk of a real cluster's pods, which the reader must skip). Each
pod carries what a real one does (environment, volumes, probes, managed fields, container statuses):
about 4.5 KB of JSON. The bodies are served in pages of 500, as JSON text, the way the official client
returns them with ``_preload_content=False``; the timing covers decoding them (``loads_without_gc``, as
``api_lister`` does) and building the inventory (``KubernetesInventory.read``), the best of ``--repeat``.
``--assigned`` also gives every pod's GPU indices, as the exporter's series in Prometheus would. ``--keep``
keeps what the reader keeps in a SQLite store (``keep_in``: a row per node as listed, with its GPU pods):
the first read writes them all; ``next_read_seconds``, a read again with nothing changed, writes none.

``--slurm`` measures the Slurm inventory instead (``SlurmInventory.read``): the same nodes in ``sinfo
--json``, ``--jobs`` running jobs of 2 nodes x 4 GPUs each plus as many finished ones in ``squeue --json
--states=all``, with the fields Slurm 22.05 prints for a job (about 3 KB each), and ``--pending`` jobs
waiting for GPUs in the same partition (what each running job would queue behind); the commands' output is
given, not run.

The HTTP transfer is left out: on a real cluster it depends on the API server, and the test stand-in (kmock)
would measure itself. Peak memory (``max_rss_mb``) includes the synthetic bodies themselves.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1250)
    parser.add_argument("--cpu-pods", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--assigned", action="store_true", help="give every pod's GPU indices")
    parser.add_argument("--slurm", action="store_true", help="measure the Slurm inventory instead")
    parser.add_argument("--jobs", type=int, default=5000, help="running Slurm jobs (--slurm)")
    parser.add_argument("--pending", type=int, default=0, help="pending Slurm jobs asking GPUs (--slurm)")
    parser.add_argument(
        "--keep", action="store_true", help="keep what the reader keeps in a SQLite store (keep_in)"
    )
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.db import make_engine  # noqa: E402
from alerting.k8s_assignments import Assignment  # noqa: E402
from alerting.k8s_inventory import KubernetesInventory  # noqa: E402
from alerting.kept_inventory import KeptInventoryStore  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from alerting.slurm_inventory import SlurmInventory  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.jsonload import loads_without_gc  # noqa: E402 - imported after the command line is read

RACK = "topology.kubernetes.io/rack"


def cluster(nodes: int, cpu_pods: int) -> tuple[dict[str, list[bytes]], list[Assignment]]:
    """The list pages of nodes and pods, and the GPU assignments of the GPU pods."""
    node_items = [
        {
            "metadata": {"name": f"gpu-{n:05d}", "labels": {RACK: f"r{n // 32:03d}"}},
            "spec": {},
            "status": {
                "capacity": {"cpu": "128", "memory": "2Ti", "nvidia.com/gpu": "8"},
                "allocatable": {"cpu": "127", "memory": "1990Gi", "nvidia.com/gpu": "8"},
                "conditions": [
                    {"type": "MemoryPressure", "status": "False"},
                    {"type": "Ready", "status": "True"},
                ],
            },
        }
        for n in range(nodes)
    ]
    pods: list[dict[str, Any]] = []
    assigned: list[Assignment] = []
    per_service = 16  # replicas
    for i in range(nodes * 2):
        service, replica = divmod(i, per_service)
        rs = f"svc-{service:04d}-5d8f7c"
        node, half = divmod(i, 2)
        name = f"{rs}-{replica:05d}"
        owner = [{"kind": "ReplicaSet", "name": rs, "controller": True}]
        pods.append(_pod(name, f"gpu-{node:05d}", 4, owner))
        assigned.extend(
            Assignment(f"gpu-{node:05d}", half * 4 + g, f"GPU-{node}-{half * 4 + g}", "serving", name)
            for g in range(4)
        )
    pods.extend(_pod(f"web-5d8f7c-{p:06d}", f"gpu-{p % nodes:05d}", 0, []) for p in range(cpu_pods))
    return {"nodes": _pages(node_items), "pods": _pages(pods)}, assigned


def _pages(items: list[dict[str, Any]], size: int = 500) -> list[bytes]:
    return [
        json.dumps(
            {"items": items[i : i + size], "metadata": {"continue": "next" if i + size < len(items) else ""}}
        ).encode()
        for i in range(0, len(items), size)
    ]


def _pod(name: str, node: str, gpus: int, owners: list[dict[str, Any]]) -> dict[str, Any]:
    limits = {"cpu": "4", "memory": "16Gi", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    app = name.rsplit("-", 2)[0]
    env = [{"name": f"SETTING_{i}", "value": f"value-{i}-{app}"} for i in range(12)]
    mounts = [{"name": f"vol-{i}", "mountPath": f"/mnt/data/{i}", "readOnly": True} for i in range(4)]
    probe = {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 10, "failureThreshold": 3}
    return {
        "metadata": {
            "namespace": "serving",
            "name": name,
            "uid": "3f1c9a52-8d2e-4b7a-9c61-0e5f2d8a7b41",
            "resourceVersion": "918273645",
            "creationTimestamp": "2026-11-20T08:15:00Z",
            "labels": {"app.kubernetes.io/name": app, "pod-template-hash": "5d8f7c", "team": "inference"},
            "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "8000"},
            "ownerReferences": owners,
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {f"f:spec.containers.{i}": {} for i in range(30)},
                }
            ],
        },
        "spec": {
            "nodeName": node,
            "serviceAccountName": "default",
            "containers": [
                {
                    "name": "main",
                    "image": "registry.example.com/inference/vllm:0.6.3",
                    "args": ["--model", "/models/llama", "--tensor-parallel-size", str(gpus or 1)],
                    "env": env,
                    "resources": {"limits": limits, "requests": limits},
                    "volumeMounts": mounts,
                    "readinessProbe": probe,
                    "livenessProbe": probe,
                }
            ],
            "volumes": [
                {"name": f"vol-{i}", "persistentVolumeClaim": {"claimName": f"data-{i}"}} for i in range(4)
            ],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "status": {
            "phase": "Running",
            "podIP": "10.42.17.23",
            "startTime": "2026-11-20T08:15:03Z",
            "conditions": [
                {"type": t, "status": "True", "lastTransitionTime": "2026-11-20T08:15:40Z"}
                for t in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
            ],
            "containerStatuses": [
                {
                    "name": "main",
                    "ready": True,
                    "restartCount": 0,
                    "image": "registry.example.com/inference/vllm:0.6.3",
                    "imageID": "registry.example.com/inference/vllm@sha256:" + "ab" * 32,
                    "containerID": "containerd://" + "cd" * 32,
                    "state": {"running": {"startedAt": "2026-11-20T08:15:20Z"}},
                }
            ],
        },
    }


def slurm_outputs(nodes: int, jobs: int, pending: int = 0) -> dict[str, str]:
    """What scontrol, sinfo and squeue would print for such a cluster (``pending``: that many more jobs
    waiting in the queue for 2 nodes x 4 GPUs each, eligible, each of its own priority)."""
    names = [f"gpu-{n:05d}" for n in range(nodes)]
    sinfo = {
        "nodes": [{"name": n, "gres": "gpu:h100:8(S:0-1)", "state": "mixed", "cpus": 128} for n in names]
    }
    squeue = []
    for j in range(jobs * 2):
        pair = [names[(2 * j) % nodes], names[(2 * j + 1) % nodes]]
        state = "RUNNING" if j < jobs else "COMPLETED"
        squeue.append(
            {
                "job_id": 100_000 + j,
                "name": f"train-{j % 97}",
                "job_state": state,
                "user_name": "alice",
                "account": "research",
                "partition": "gpu",
                "command": "/home/alice/train.sh --config /home/alice/configs/llm.yaml",
                "current_working_directory": "/home/alice/runs/" + "x" * 40,
                "nodes": ",".join(pair),
                "gres_detail": ["gpu:4(IDX:0-3)", "gpu:4(IDX:4-7)"],
                "job_resources": {
                    "nodes": ",".join(pair),
                    "allocated_nodes": [
                        {
                            "nodename": n,
                            "cpus": 32,
                            "sockets": {
                                str(s): {"cores": {str(c): "allocated" for c in range(16)}} for s in range(2)
                            },
                        }
                        for n in pair
                    ],
                },
                "tres_alloc_str": "cpu=64,mem=512G,node=2,billing=64,gres/gpu=8",
                "start_time": 1_764_000_000 + j,
                "submit_time": 1_763_999_000 + j,
            }
        )
    squeue += [
        {
            "job_id": 300_000 + j,
            "name": f"queued-{j % 89}",
            "job_state": "PENDING",
            "state_reason": "Priority",
            "priority": 10_000 + j,
            "user_name": "bob",
            "partition": "gpu",
            "node_count": 2,
            "tres_per_node": "gres:gpu:4",
            "tres_req_str": "cpu=64,mem=512G,node=2,billing=64",
            "job_resources": None,
            "gres_detail": [],
            "submit_time": 1_763_999_000 + j,
        }
        for j in range(pending)
    ]
    topology = "\n".join(
        f"SwitchName=r{r:03d} Level=0 LinkSpeed=1 Nodes={','.join(names[r * 32 : r * 32 + 32])}"
        for r in range((nodes + 31) // 32)
    )
    return {
        "scontrol show config": "ClusterName = c1\n",
        "scontrol show topology": topology + "\n",
        "scontrol show partition --oneliner --all": "PartitionName=gpu Nodes=ALL State=UP\n",
        "sinfo --json": json.dumps(sinfo),
        "squeue --json --states=all": json.dumps({"jobs": squeue}),
    }


def bench_slurm(args: argparse.Namespace) -> None:
    outputs = slurm_outputs(args.nodes, args.jobs, args.pending)
    best = float("inf")
    inventory = None
    for _ in range(args.repeat):
        reader = SlurmInventory(FakeClock(0.0), lambda argv: outputs[" ".join(argv)])
        gc.collect()
        start = time.perf_counter()
        inventory = reader.read()
        best = min(best, time.perf_counter() - start)
    assert inventory is not None
    print(
        json.dumps(
            {
                "bench": "slurm_inventory_read",
                "nodes": args.nodes,
                "gpus": args.nodes * 8,
                "jobs_listed": args.jobs * 2 + args.pending,
                "pending_jobs": args.pending,
                "running_jobs": len(inventory.workloads()),
                "squeue_bytes": len(outputs["squeue --json --states=all"]),
                "read_seconds": round(best, 3),
            }
        )
    )


def main(args: argparse.Namespace) -> None:
    if args.slurm:
        bench_slurm(args)
        return
    bodies, assigned = cluster(args.nodes, args.cpu_pods)

    def lister(name: str) -> Iterator[dict[str, Any]]:
        for page in bodies[name]:
            yield from loads_without_gc(page)["items"]  # page by page, as api_lister does

    best, again = float("inf"), float("inf")
    inventory = None
    reader = None
    with tempfile.TemporaryDirectory() as folder:
        for i in range(args.repeat):
            reader = KubernetesInventory(
                FakeClock(0.0),
                lister,
                cluster="k1",
                assignments=(lambda: assigned) if args.assigned else None,
            )
            if args.keep:  # a store of its own each time: the first read writes a row per node
                store = make_engine(f"sqlite:///{folder}/kept{i}.db")
                upgrade(store)
                reader.keep_in(KeptInventoryStore(store, "kubernetes"))
            gc.collect()
            start = time.perf_counter()
            inventory = reader.read()
            best = min(best, time.perf_counter() - start)
            gc.collect()
            start = time.perf_counter()
            reader.read()  # the next refresh, nothing changed
            again = min(again, time.perf_counter() - start)
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
                "list_bytes": sum(len(page) for pages in bodies.values() for page in pages),
                "assigned": args.assigned,
                "ambiguous_pods": reader.ambiguous_pods,
                "read_seconds": round(best, 3),
                "keep": args.keep,
                "next_read_seconds": round(again, 3),
                "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS)

"""Where an alert points in the topology: cluster ⊃ rack ⊃ node ⊃ GPU, plus the workloads it names.

An infrastructure location is a path ``(cluster, rack, node, gpu)`` cut at the most specific known
component; an unknown rack is ``"?"`` and never counts as a common component.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from alerting.faults import JOB_FAULTS, SYMPTOM_KINDS
from alerting.inventory import Inventory, NodeInfo
from gpuwarden.labelnumbers import label_number
from gpuwarden.model import (
    NODE_LABELS,
    ClusterRef,
    FaultKind,
    GpuRef,
    NodeRef,
    RackRef,
    Target,
    WorkloadKind,
    WorkloadRef,
    workload_from_dict,
    workload_to_dict,
)

UNKNOWN = "?"
RACK_DEPTH = 2
"""Length of a rack's path (cluster, rack): a node's is one more, a GPU's two."""
WORKLOAD_LABELS = ("pod", "exported_pod", "slurm_job", "training_job")
"""Labels that name the workload an alert is about (``service`` and ``job`` are looked up first)."""
Path = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Location:
    """The infrastructure path of an alert (may be empty) and the workloads it names."""

    path: Path
    workloads: frozenset[WorkloadRef]
    # Where a workload symptom's rank runs: the paths of its GPUs, when the alert names a ``rank`` of one
    # training job whose ranks the inventory lists (empty otherwise). Correlation prefers the incident whose
    # root holds them: a rank on a dead rack stalls because of the rack, not of a switch elsewhere. For a
    # service's requests scraped at an address no node label names: the node of that address (``_runs_on``).
    runs_on: frozenset[Path] = frozenset()


def _node_name(labels: Mapping[str, str]) -> str:
    for name in NODE_LABELS:
        if labels.get(name):
            return labels[name]
    return _instance_host(labels)


def _instance_host(labels: Mapping[str, str]) -> str:
    instance = labels.get("instance", "")
    if instance.startswith("["):  # [ipv6]:port
        return instance.split("]")[0].lstrip("[")
    return instance.rsplit(":", 1)[0] if instance.count(":") == 1 else instance


def alert_pod(labels: Mapping[str, str]) -> tuple[str, str] | None:
    """The namespace and pod an alert names, if any (``default`` without a namespace)."""
    if labels.get("exported_pod"):
        # Prometheus renames an exporter's `pod`/`namespace` to `exported_*` when the scrape target has its
        # own (a Kubernetes service discovery): those name the GPU's workload, the others the exporter.
        namespace = labels.get("exported_namespace") or labels.get("namespace") or "default"
        return namespace, labels["exported_pod"]
    if labels.get("pod"):
        return labels.get("namespace") or "default", labels["pod"]
    return None


def _workloads(
    labels: Mapping[str, str],
    kind: FaultKind,
    inventory: Inventory | None,
    cluster: str,
    lookup: str,
    *,
    scraped_service: bool = False,
) -> set[WorkloadRef]:
    """The workloads an alert names: looked up in the inventory in cluster ``lookup`` ("" for any), else
    made from the labels in the alert's ``cluster``. ``scraped_service``: the alert is a service's that no
    node label places (``_scraped_service``), so its scrape ``job`` names the service when no other label
    does."""
    namespace = labels.get("namespace", "") or "default"

    def service_namespace(name: str) -> str:
        """The alert's namespace; without one, that of the one namespace whose service of this name the
        inventory knows (an SLO rule that keeps only `service`), else ``default``."""
        if labels.get("namespace") or inventory is None:
            return namespace
        ref = inventory.find_workload(WorkloadKind.INFERENCE_SERVICE, name, "", lookup, one_namespace=True)
        return ref.namespace if ref is not None and ref.namespace else namespace

    def known(kind: WorkloadKind, name: str, namespace: str = "") -> bool:
        return inventory is not None and (
            inventory.find_workload(kind, name, namespace, lookup) is not None
            or (kind is WorkloadKind.TRAINING_JOB and bool(inventory.find_group(kind, name, lookup)))
        )

    found: set[WorkloadRef] = set()
    for name in ("slurm_job", "training_job"):
        if labels.get(name):
            found.add(
                WorkloadRef(WorkloadKind.TRAINING_JOB, labels.get("namespace", ""), labels[name], cluster)
            )
    job = labels.get("job", "")
    # The Prometheus Operator names a scrape job after the Service it scrapes: a `service` equal to `job`
    # that the inventory does not know is the exporter's (kube-state-metrics), not a workload.
    if (
        inventory is not None
        and labels.get("service")
        and labels.get("service") == labels.get("job")
        and kind is not FaultKind.SERVICE_DEGRADED
        and any(labels.get(k) for k in ("pod", "exported_pod", "node"))
        and not known(WorkloadKind.INFERENCE_SERVICE, labels["service"], service_namespace(labels["service"]))
    ):
        labels = {k: v for k, v in labels.items() if k != "service"}
    # `job` is also Prometheus' scrape-job label: only a known training job or a job fault counts.
    job_fault = kind in JOB_FAULTS
    if job and (job_fault or known(WorkloadKind.TRAINING_JOB, job)):
        found.add(WorkloadRef(WorkloadKind.TRAINING_JOB, labels.get("namespace", ""), job, cluster))
    # Sloth's SLO alerts name their service in `sloth_service`.
    service = labels.get("service", "") or labels.get("sloth_service", "")
    pod_namespace, pod = alert_pod(labels) or (namespace, "")
    # The Prometheus Operator labels every scraped series with the Service it scraped (the exporter's own):
    # a `service` the inventory does not know loses to a `pod` it knows.
    if (
        service
        and pod
        and not known(WorkloadKind.INFERENCE_SERVICE, service, service_namespace(service))
        and known(WorkloadKind.POD, pod, pod_namespace)
    ):
        service = ""
    if service:
        found.add(WorkloadRef(WorkloadKind.INFERENCE_SERVICE, service_namespace(service), service, cluster))
    elif pod:
        found.add(WorkloadRef(WorkloadKind.POD, pod_namespace, pod, cluster))
    elif scraped_service and job and not found:
        # The scrape job names what it scrapes (the Prometheus Operator's after the Service), as
        # `job="llama"` names the inference server whose latency rose.
        found.add(WorkloadRef(WorkloadKind.INFERENCE_SERVICE, service_namespace(job), job, cluster))
    if inventory is not None:
        found = {ref for w in found for ref in _known(inventory, w, lookup)}
    return found


def _known(inventory: Inventory, ref: WorkloadRef, lookup: str) -> list[WorkloadRef]:
    """The inventory's workloads for a name an alert gives: a Slurm array's id names all its tasks; else the
    one it knows by that name, else the name as the alert gives it."""
    if ref.kind is WorkloadKind.TRAINING_JOB:
        group = inventory.find_group(ref.kind, ref.name, lookup)
        if group:
            return group
    return [inventory.find_workload(ref.kind, ref.name, ref.namespace, lookup) or ref]


def locate(labels: Mapping[str, str], kind: FaultKind, inventory: Inventory | None = None) -> Location:
    """The location of an alert from its labels, completed by the inventory."""
    cluster = labels.get("cluster", "")
    rack = labels.get("rack", "")
    node = _node_name(labels)
    gpu = labels.get("gpu", "")
    if label_number(gpu) is None:
        gpu = ""  # not a GPU index (`gpu="⁷"`, 20 digits): the alert keeps the label, its location does not
    uuid = labels.get("UUID", "") or labels.get("uuid", "")
    # The cluster to find the alert's node and workloads in: its label's if the inventory has it, else
    # the one cluster with a node of that name (Prometheus' name for a cluster may differ from Slurm's
    # ClusterName: the inventory's names the path then, so both kinds of alert meet in one place).
    lookup = ""
    exporter_address = False
    info: NodeInfo | None = None
    if inventory is not None:
        known = cluster if cluster and inventory.nodes_in(cluster) else ""
        info = inventory.node(node, known) if node else None
        if uuid and not (info is not None and gpu):
            # A UUID the inventory places wins over a node it does not know (an exporter scraped by IP:
            # `instance="10.0.0.1:9400"`).
            placed = inventory.gpu_by_uuid(uuid)
            if placed is not None and known in ("", placed[0]):
                if node and info is None:  # a node named that the inventory does not know
                    node, gpu = "", ""
                known, node, gpu = placed[0], node or placed[1], gpu or str(placed[2])
                info = inventory.node(node, known)
        if info is None and node and node == _instance_host(labels):
            # A host named only by `instance` that the inventory does not know: a fully qualified name of
            # a node it knows (`r07-n01.dc1.example.com`), or the scraped exporter's own address
            # (kube-state-metrics' pod IP) when the alert names what it is about (a pod, a job).
            short = (
                inventory.node(node.split(".", 1)[0], known)
                if "." in node and not node[0].isdigit()
                else None
            )
            if short is not None:
                info, node = short, short.name
            elif any(labels.get(k) for k in WORKLOAD_LABELS) and inventory.nodes_in(cluster or known):
                exporter_address = True
        if info is not None:
            lookup = cluster = info.cluster
            node = info.name  # named by its host name or address: the path has its name
            rack = rack or info.rack
        else:
            lookup = known
        # Else a `cluster` label the inventory does not know and a node it does not know: the workload is
        # found by name alone, when only one cluster has it.
    # A server's requests scraped at its address (a pod IP): "node 10.1.2.3 degraded" named no node; summed
    # over its addresses (only `job` left): "location unknown".
    scraped = info is None and _scraped_service(labels, kind)
    workloads = frozenset(_workloads(labels, kind, inventory, cluster, lookup, scraped_service=scraped))
    if exporter_address and workloads:
        return Location((), workloads)  # about its workload, not about the exporter's host
    runs_on = _runs_on(labels, kind, workloads, inventory, cluster if scraped else None)
    if kind in SYMPTOM_KINDS and (workloads or scraped):
        # A workload symptom points at the workload, not at the host its exporter happens to run on.
        node, gpu, uuid = "", "", ""
        if not labels.get("rack"):
            rack = ""
    path: list[str] = []
    if cluster or rack or node:
        path.append(cluster)
        if rack or node:
            path.append(rack or UNKNOWN)
            if node:
                path.append(node)
                if gpu or uuid:
                    path.append(gpu or uuid)
    return Location(tuple(path), workloads, runs_on)


def _scraped_service(labels: Mapping[str, str], kind: FaultKind) -> bool:
    """Whether the alert is a service's degraded requests (latency, errors) that no node label places: its
    only place is ``instance``, the address Prometheus scraped the server at (``10.1.2.3:8000``, a pod IP on
    Kubernetes; an address the inventory knows as a node is that node, the caller checks), or it has none
    (an aggregating recording rule keeps only ``job``, ``route``, ``model``)."""
    return kind is FaultKind.SERVICE_DEGRADED and not any(labels.get(name) for name in NODE_LABELS)


def _runs_on(
    labels: Mapping[str, str],
    kind: FaultKind,
    workloads: frozenset[WorkloadRef],
    inventory: Inventory | None,
    scraped_in: str | None,
) -> frozenset[Path]:
    """Where a workload symptom runs (``Location.runs_on``): its rank's GPUs (``_rank_gpus``); else, for a
    service's requests scraped at an address (``scraped_in``: the alert's cluster, None for other alerts),
    the node of that address. A GPU exporter or node-exporter scraped there without a node label places its
    alerts at that node, and a fault of that node explains the service's symptom (a pod IP that is no node's
    address meets no fault)."""
    if kind not in SYMPTOM_KINDS:
        return frozenset()
    ranks = _rank_gpus(labels, workloads, inventory)
    host = _instance_host(labels)
    if ranks or scraped_in is None or not host:
        return ranks
    return frozenset({(scraped_in, UNKNOWN, host)})


def _rank_gpus(
    labels: Mapping[str, str], workloads: frozenset[WorkloadRef], inventory: Inventory | None
) -> frozenset[Path]:
    """The GPU paths of the ``rank`` an alert names, when it names one training job whose ranks the
    inventory places exactly (``WorkloadInfo.units`` in rank order: one unit per rank, as the simulated
    fleet, Slurm's one rank per GPU and inventory files list them); else empty."""
    index = label_number(labels.get("rank"))
    jobs = [w for w in workloads if w.kind is WorkloadKind.TRAINING_JOB]
    if inventory is None or index is None or len(jobs) != 1:
        return frozenset()
    info = inventory.workload(jobs[0])
    if info is None or index >= len(info.units) or info.size(index) < len(info.units[index]):
        return frozenset()  # unknown, or a unit whose GPUs are only guessed
    found = set()
    for cluster, name, gpu in info.units[index]:
        node = inventory.node(name, cluster or jobs[0].cluster)
        if node is None:
            return frozenset()
        found.add((node.cluster, node.rack or UNKNOWN, node.name, str(gpu)))
    return frozenset(found)


def common_ancestor(paths: Iterable[Path]) -> Path:
    """The longest shared prefix of the paths. An unknown rack is never the common component: paths that
    share their node share it (an unknown rack above one node is that node's), those that do not share only
    their cluster (two nodes of unknown racks may be in two racks)."""
    items = list(paths)
    if not items:
        return ()
    # What all share is what the first and the last in sorted order share: two comparisons of all of them in
    # C, not one per path per depth in Python (a 10,000-alert incident's root is worked out at each batch).
    low, high = min(items), max(items)
    depth = next((i for i, (a, b) in enumerate(zip(low, high, strict=False)) if a != b), len(low))
    prefix = low[:depth]
    return prefix[:-1] if prefix[-1:] == (UNKNOWN,) else prefix


def contains(ancestor: Path, path: Path) -> bool:
    """Whether ``path`` lies in the subtree of ``ancestor`` (a non-empty path)."""
    return bool(ancestor) and path[: len(ancestor)] == ancestor


def path_target(path: Path, inventory: Inventory | None = None) -> Target:
    """The model target for a path."""
    cluster = path[0]
    if len(path) == 1:
        return ClusterRef(cluster)
    rack = "" if path[1] == UNKNOWN else path[1]
    if len(path) == 2:
        return RackRef(cluster, rack)
    if len(path) == 3:
        return NodeRef(path[2], cluster, rack)
    gpu = path[3]
    index = label_number(gpu)
    if index is not None:
        uuid = ""
        info = inventory.node(path[2], path[0]) if inventory is not None else None
        if info is not None and index < len(info.gpu_uuids):
            uuid = info.gpu_uuids[index]
        return GpuRef(path[2], index, uuid)
    return GpuRef(path[2], -1, gpu)


def target_to_dict(target: Target) -> dict[str, str | int]:
    """A JSON shape for a target: its type plus its fields."""
    if isinstance(target, ClusterRef):
        return {"type": "cluster", "name": target.name}
    if isinstance(target, RackRef):
        return {"type": "rack", "cluster": target.cluster, "name": target.name}
    if isinstance(target, NodeRef):
        return {"type": "node", "cluster": target.cluster, "rack": target.rack, "name": target.name}
    if isinstance(target, GpuRef):
        return {"type": "gpu", "node": target.node, "index": target.index, "uuid": target.uuid}
    return {"type": "workload", **workload_to_dict(target)}


def target_from_dict(data: Mapping[str, object]) -> Target:
    """Inverse of ``target_to_dict``."""
    kind = data.get("type")
    s = {k: str(v) for k, v in data.items()}
    if kind == "cluster":
        return ClusterRef(s["name"])
    if kind == "rack":
        return RackRef(s["cluster"], s["name"])
    if kind == "node":
        return NodeRef(s["name"], s.get("cluster", ""), s.get("rack", ""))
    if kind == "gpu":
        return GpuRef(s["node"], int(s["index"]), s.get("uuid", ""))
    return workload_from_dict(s)


def target_label(target: Target, *, namespaced: bool = False, cluster: str = "") -> str:
    """A short human name: ``rack r07``, ``node n01``, ``gpu n01/3``, ``training job llm-70b``.
    ``namespaced``: a workload as kubectl names it, ``inference service prod/llama`` (where its name alone is
    ambiguous, see ``impact.namesakes``), when it has a namespace; a pod always so (``pod prod/llm-chat-5``).
    ``cluster``: the cluster it is in, said after it (``rack r07 in cluster a``; ``titles.title_cluster``)."""
    if isinstance(target, ClusterRef):
        return f"cluster {target.name or '?'}"
    if cluster:
        return f"{target_label(target, namespaced=namespaced)} in cluster {cluster}"
    if isinstance(target, RackRef):
        return f"rack {target.name or '?'}"
    if isinstance(target, NodeRef):
        return f"node {target.name}"
    if isinstance(target, GpuRef):
        return f"gpu {target.node}/{target.index if target.index >= 0 else target.uuid}"
    # A pod always: its name (a StatefulSet's llm-chat-5) repeats in every namespace it runs in, and kubectl
    # finds it only with its namespace; a service or job only where its name alone is ambiguous.
    spaced = namespaced or target.kind is WorkloadKind.POD
    name = f"{target.namespace}/{target.name}" if spaced and target.namespace else target.name
    return f"{target.kind.value.replace('_', ' ')} {name}"

"""The inventory of a Kubernetes cluster, read through the Kubernetes API with the official client.

* nodes and their GPUs: ``status.capacity`` of each node for the GPU resources (``nvidia.com/gpu``);
  racks from the first node label in ``rack_labels`` that the node carries (none: the rack is unknown);
* workloads: every pod bound to a node that requests GPUs, grouped by what runs it. A pod of a Deployment
  (through its ReplicaSet), StatefulSet or LeaderWorkerSet is a replica of an inference service named after
  that controller; a pod of a Job, JobSet or training operator job (PyTorchJob, MPIJob, ...) is a worker of
  a training job; any other pod is a workload of its own. Each pod is one unit (replica or worker), and an
  alert naming a pod (the exporter's ``namespace``/``pod`` labels) is placed on the workload that runs it.
  A service also answers to its pods' ``app.kubernetes.io/name`` and ``app`` labels, which is what an
  inference server usually reports as its ``service``.
* spare GPUs: the GPUs of Ready, schedulable nodes that no bound pod requests.

The Kubernetes API says how many GPUs a pod got, not which: only the kubelet knows (its pod-resources API,
which the gpuwarden exporter and dcgm-exporter read to label each GPU's series with its pod). So the
indices come from those series when ``assignments`` is given (a PromQL query over the exporter's metrics,
read by the composition root); otherwise a pod that holds every GPU of its node holds them all, and a pod
sharing a node is placed on the node's GPUs that no other pod is known to hold. The last case over-counts
(one dead GPU hits every such pod of that node); ``ambiguous_pods`` says how many pods were placed so.

When a node dies its pods stay listed (phase Running, then Unknown or Failed) until the node controller
evicts them; an incident the node's failure opened must still know they ran there after they are gone. So a
pod that disappears or fails while its node is not Ready, or that fails (phase Failed or Unknown), stays a
unit of its workload ``keep_ended_seconds`` with the GPUs it held. A pod deleted from a healthy node (a
rollout, a scale-down) or that succeeded is not kept.

Lists are read in pages (``limit``/``continue``) and filtered here, so a list that ignores selectors (the
test stand-in) reads the same as a real API server.
"""

from __future__ import annotations

import gc
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from alerting.inventory import GpuKey, NodeInfo, StaticInventory, WorkloadInfo
from alerting.topology import UNKNOWN
from gpuwarden.clock import Clock
from gpuwarden.errors import SourceError
from gpuwarden.model import WorkloadKind, WorkloadRef

logger = logging.getLogger(__name__)

Lister = Callable[[str], list[dict[str, Any]]]
"""Every object of a resource (``nodes``, ``pods``, ``replicasets``) across namespaces."""

DEFAULT_RACK_LABELS = ("topology.kubernetes.io/rack", "rack")
DEFAULT_GPU_RESOURCES = ("nvidia.com/gpu",)
SERVICE_OWNERS = frozenset({"Deployment", "StatefulSet", "LeaderWorkerSet", "ReplicaSet", "DaemonSet"})
TRAINING_OWNERS = frozenset({"Job", "JobSet", "PyTorchJob", "TFJob", "MPIJob", "XGBoostJob", "PaddleJob"})
# Labels that name the training job above a pod's direct owner (a JobSet's Job, an operator's replica).
TRAINING_NAME_LABELS = ("jobset.sigs.k8s.io/jobset-name", "training.kubeflow.org/job-name")
SERVICE_ALIAS_LABELS = ("app.kubernetes.io/name", "app")
_PLACED_PHASES = {"Pending", "Running"}
_FAILED_PHASES = {"Failed", "Unknown"}
PAGE = 500


@dataclass(frozen=True, slots=True)
class Assignment:
    """One GPU as the exporter labels it: node, index, UUID, and the pod it is assigned to (if any)."""

    node: str
    index: int
    uuid: str = ""
    namespace: str = ""
    pod: str = ""


def assignments_from_labels(
    rows: Iterable[Mapping[str, str]], node_label: str = "Hostname", gpu_label: str = "gpu"
) -> list[Assignment]:
    """Assignments from the label sets of a PromQL result (``Hostname``, ``gpu``, ``UUID``, ``namespace``,
    ``pod``); rows without a node or a numeric index are skipped."""
    out = []
    for labels in rows:
        node, index = labels.get(node_label, ""), labels.get(gpu_label, "")
        if node and index.isdigit():
            out.append(
                Assignment(
                    node,
                    int(index),
                    labels.get("UUID", ""),
                    labels.get("namespace", ""),
                    labels.get("pod", ""),
                )
            )
    return out


def _quantity(value: Any) -> int:
    """A GPU count (``"8"``, ``8``); anything else (a malformed quantity) counts 0."""
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0


def node_gpus(node: Mapping[str, Any], resources: Sequence[str]) -> int:
    """GPUs a node has: its capacity (allocatable drops a GPU the device plugin marks unhealthy)."""
    capacity = (node.get("status") or {}).get("capacity") or {}
    return sum(_quantity(capacity.get(r, 0)) for r in resources)


def node_ready(node: Mapping[str, Any]) -> bool:
    """Whether the node's ``Ready`` condition is ``True``."""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def pod_gpus(pod: Mapping[str, Any], resources: Sequence[str]) -> int:
    """GPUs a pod requests: the sum over its containers, or the largest init container if more (the
    scheduler's rule). Extended resources are set in limits (requests, if given, must equal them)."""

    def wanted(container: Mapping[str, Any]) -> int:
        spec = container.get("resources") or {}
        amounts = {**(spec.get("requests") or {}), **(spec.get("limits") or {})}
        return sum(_quantity(amounts.get(r, 0)) for r in resources)

    pod_spec = pod.get("spec") or {}
    main = sum(wanted(c) for c in pod_spec.get("containers") or [])
    init = max((wanted(c) for c in pod_spec.get("initContainers") or []), default=0)
    return max(main, init)


def _controller(meta: Mapping[str, Any]) -> tuple[str, str] | None:
    refs = meta.get("ownerReferences") or []
    for ref in refs:
        if ref.get("controller"):
            return str(ref.get("kind", "")), str(ref.get("name", ""))
    return (str(refs[0].get("kind", "")), str(refs[0].get("name", ""))) if refs else None


def _workload_of(
    pod: Mapping[str, Any], replica_sets: Mapping[tuple[str, str], Mapping[str, Any]]
) -> tuple[WorkloadRef, tuple[str, ...]]:
    """The workload that runs a pod, and the other names it answers to."""
    meta = pod.get("metadata") or {}
    namespace, name = str(meta.get("namespace") or "default"), str(meta.get("name", ""))
    labels = meta.get("labels") or {}
    owner = _controller(meta)
    if owner is not None and owner[0] == "ReplicaSet":
        replica_set = replica_sets.get((namespace, owner[1]))
        above = _controller(replica_set.get("metadata") or {}) if replica_set is not None else None
        if above is not None and above[0] == "Deployment":
            owner = above
    if owner is not None and (owner[0] in TRAINING_OWNERS or owner[0].endswith("Job")):
        job = next((labels[k] for k in TRAINING_NAME_LABELS if labels.get(k)), owner[1])
        return WorkloadRef(WorkloadKind.TRAINING_JOB, namespace, job), ()
    if owner is not None and owner[0] in SERVICE_OWNERS:
        aliases = tuple(dict.fromkeys(str(labels[k]) for k in SERVICE_ALIAS_LABELS if labels.get(k)))
        return WorkloadRef(WorkloadKind.INFERENCE_SERVICE, namespace, owner[1]), aliases
    return WorkloadRef(WorkloadKind.POD, namespace, name), ()


@dataclass(slots=True)
class _Pod:
    key: tuple[str, str]  # namespace, name
    node: str
    count: int
    workload: WorkloadRef
    aliases: tuple[str, ...]
    gpus: frozenset[GpuKey] = frozenset()


@dataclass(slots=True)
class _Read:
    nodes: list[NodeInfo] = field(default_factory=list)
    pods: list[_Pod] = field(default_factory=list)
    ended: list[tuple[str, str]] = field(default_factory=list)  # failed pods (namespace, name)
    ready: set[str] = field(default_factory=set)
    usable: dict[str, int] = field(default_factory=dict)  # Ready, schedulable node -> its GPUs


def _place(pods: list[_Pod], nodes: Mapping[str, NodeInfo], assigned: Sequence[Assignment]) -> int:
    """Give each pod its GPUs (see the module text); the number of pods placed on a guess."""
    known: dict[tuple[str, str, str], set[int]] = {}
    for a in assigned:
        if a.pod:
            known.setdefault((a.node, a.namespace, a.pod), set()).add(a.index)
    held: dict[str, set[int]] = {}
    for pod in pods:
        indices = known.get((pod.node, *pod.key))
        if indices:
            pod.gpus = frozenset((pod.node, i) for i in indices)
            held.setdefault(pod.node, set()).update(indices)
    ambiguous = 0
    for pod in [p for p in pods if not p.gpus]:
        info = nodes.get(pod.node)
        total = info.gpu_count if info is not None else pod.count
        free = [i for i in range(total) if i not in held.get(pod.node, set())]
        if len(free) > pod.count:
            ambiguous += 1  # more candidates than GPUs it holds: some of these are another pod's
        pod.gpus = frozenset((pod.node, i) for i in free)
    return ambiguous


class KubernetesInventory:
    """Reads the inventory from the Kubernetes API; ``read`` lists nodes, pods and ReplicaSets once."""

    def __init__(
        self,
        clock: Clock,
        lister: Lister,
        *,
        cluster: str,
        rack_labels: Sequence[str] = DEFAULT_RACK_LABELS,
        gpu_resources: Sequence[str] = DEFAULT_GPU_RESOURCES,
        assignments: Callable[[], Sequence[Assignment]] | None = None,
        keep_ended_seconds: float = 3600.0,
        on_close: Sequence[Callable[[], object]] = (),
    ) -> None:
        self._clock = clock
        self._on_close = list(on_close)
        self._list = lister
        self._cluster = cluster
        self._rack_labels = tuple(rack_labels)
        self._resources = tuple(gpu_resources)
        self._assignments = assignments
        self._keep = keep_ended_seconds
        self._placed: dict[tuple[str, str], _Pod] = {}  # as last read
        self._kept: dict[tuple[str, str], tuple[float, _Pod]] = {}
        self.ambiguous_pods = 0

    def close(self) -> None:
        """Close the clients the reader was given (``on_close``)."""
        for close in self._on_close:
            close()

    def read(self) -> StaticInventory:
        """The cluster as its API shows it now, plus pods lost with their node less than a while ago."""
        now = self._clock.time()
        with gc_paused():
            seen = self._read_api()
            assigned = self._read_assignments()
        nodes = {n.name: n for n in seen.nodes}
        self.ambiguous_pods = _place(seen.pods, nodes, assigned)
        if self.ambiguous_pods:
            logger.info(
                "kubernetes inventory: %d pods share a node and their GPU indices are unknown; placed on"
                " every GPU of the node no other pod holds (configure gpu_assignment_url)",
                self.ambiguous_pods,
            )
        uuids = _uuids(assigned)
        node_list = [
            NodeInfo(n.name, n.cluster, n.rack, n.gpu_count, uuids.get(n.name, ())) for n in seen.nodes
        ]
        placed = {p.key: p for p in seen.pods}
        failed = set(seen.ended)
        for key, pod in self._placed.items():
            if key in placed:
                continue
            if key in failed or pod.node not in seen.ready:
                self._kept[key] = (now, pod)
        self._placed = placed
        self._kept = {k: v for k, v in self._kept.items() if now - v[0] <= self._keep and k not in placed}
        free = dict(seen.usable)
        for pod in placed.values():
            if pod.node in free:
                free[pod.node] -= pod.count
        pods = [*placed.values(), *(p for _, p in self._kept.values())]
        return StaticInventory(node_list, _workloads(pods), {self._cluster: max(0, sum(free.values()))})

    def _read_api(self) -> _Read:
        out = _Read()
        for node in self._list("nodes"):
            meta = node.get("metadata") or {}
            name = str(meta.get("name", ""))
            count = node_gpus(node, self._resources)
            if not name or count == 0:
                continue
            labels = meta.get("labels") or {}
            rack = next((str(labels[k]) for k in self._rack_labels if labels.get(k)), UNKNOWN)
            out.nodes.append(NodeInfo(name, self._cluster, rack, count))
            if node_ready(node):
                out.ready.add(name)
                if not (node.get("spec") or {}).get("unschedulable"):
                    out.usable[name] = count
        gpu_nodes = {n.name for n in out.nodes}
        replica_sets: dict[tuple[str, str], Mapping[str, Any]] | None = None
        for pod in self._list("pods"):
            meta = pod.get("metadata") or {}
            on = str((pod.get("spec") or {}).get("nodeName") or "")
            count = pod_gpus(pod, self._resources)
            if not on or count == 0 or on not in gpu_nodes:
                continue
            key = (str(meta.get("namespace") or "default"), str(meta.get("name", "")))
            phase = str((pod.get("status") or {}).get("phase", ""))
            if phase in _FAILED_PHASES:
                out.ended.append(key)
            if phase not in _PLACED_PHASES:
                continue
            if replica_sets is None:  # only when some pod holds GPUs: ReplicaSets are many
                replica_sets = {_key(rs): rs for rs in self._list("replicasets")}
            ref, aliases = _workload_of(pod, replica_sets)
            out.pods.append(_Pod(key, on, count, ref, aliases))
        return out

    def _read_assignments(self) -> list[Assignment]:
        if self._assignments is None:
            return []
        try:
            return list(self._assignments())
        except SourceError as exc:  # the API's view still holds; indices fall back to the guess
            logger.warning("kubernetes inventory: GPU assignments unreadable (%s); guessing indices", exc)
            return []


def _key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name", ""))


def _uuids(assigned: Sequence[Assignment]) -> dict[str, tuple[str, ...]]:
    """Per node, its GPU UUIDs by index, when every index up to the highest is known."""
    by_node: dict[str, dict[int, str]] = {}
    for a in assigned:
        if a.uuid:
            by_node.setdefault(a.node, {})[a.index] = a.uuid
    return {
        node: tuple(found[i] for i in range(len(found)))
        for node, found in by_node.items()
        if set(found) == set(range(len(found)))
    }


def _workloads(pods: Sequence[_Pod]) -> list[WorkloadInfo]:
    grouped: dict[WorkloadRef, list[_Pod]] = {}
    for pod in pods:
        grouped.setdefault(pod.workload, []).append(pod)
    out = []
    for ref, members in grouped.items():
        members.sort(key=lambda p: p.key)
        aliases = tuple(dict.fromkeys(a for p in members for a in p.aliases if a != ref.name))
        out.append(
            WorkloadInfo(
                ref,
                tuple(p.gpus for p in members),
                aliases=aliases,
                pods=tuple(p.key[1] for p in members),
            )
        )
    return out


# --- the official client ---------------------------------------------------------------------------


def decode_page(data: bytes) -> Any:
    """One list response's JSON."""
    return json.loads(data)


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a while. Decoding a large cluster's lists allocates millions of
    dicts and strings, none in a cycle, and each allocation burst set off full collections that walked
    every live object: for 42,500 pods they took three quarters of the read (benchmarks/bench_inventory.py).
    Reference counting still frees everything."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def api_lister(api_client: Any, timeout_seconds: float = 10.0) -> Lister:
    """A ``Lister`` over ``kubernetes.client``: raw JSON pages (the client's model objects cost ~10x the
    time for large lists), errors as ``SourceError`` (a 429 or 5xx is retryable)."""
    from kubernetes import client  # noqa: PLC0415 - only serve with a Kubernetes inventory needs it
    from kubernetes.client.exceptions import ApiException  # noqa: PLC0415
    from urllib3.exceptions import HTTPError  # noqa: PLC0415

    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    calls: dict[str, Callable[..., Any]] = {
        "nodes": core.list_node,
        "pods": core.list_pod_for_all_namespaces,
        "replicasets": apps.list_replica_set_for_all_namespaces,
    }

    def list_all(resource: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "limit": PAGE,
                "_preload_content": False,
                "_request_timeout": timeout_seconds,
            }
            if token:
                kwargs["_continue"] = token
            try:
                response = calls[resource](**kwargs)
                page = decode_page(response.data)
            except ApiException as exc:
                raise SourceError(
                    f"list {resource}: HTTP {exc.status} {exc.reason}",
                    source="kubernetes",
                    retryable=exc.status == 429 or (exc.status or 0) >= 500,
                ) from exc
            except (HTTPError, OSError, ValueError) as exc:
                raise SourceError(
                    f"list {resource}: {type(exc).__name__}: {exc}", source="kubernetes"
                ) from exc
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise SourceError(f"list {resource}: the response has no 'items' list", source="kubernetes")
            items.extend(page["items"])
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return items

    return list_all

"""The inventory of a Kubernetes cluster, read through the Kubernetes API with the official client.

* nodes and their GPUs: ``status.capacity`` of each node for the GPU resources (``nvidia.com/gpu``; with
  the MIG "single" strategy that counts MIG slices); racks from the first node label in ``rack_labels``
  that the node carries (none: the rack is unknown). A node whose GPU capacity drops to 0 (its device
  plugin down) keeps its last count and is not counted as spare. A node of MIG devices only (the "mixed"
  strategy: ``nvidia.com/mig-1g.10gb``, ...) is left out, with a warning, unless ``gpu_resources`` lists them;
  a node with only some GPUs in MIG mode counts its full GPUs and warns that its slices (and the pods on
  them) are left out until ``gpu_resources`` lists them.
  A MIG node's GPUs are its physical ones where a label says, and a pod's slices are on the GPUs the
  exporter says, else on its node as a whole (``k8s_mig``); so are a time-sliced node's GPUs and its pods'
  replicas (``nvidia.com/gpu.replicas`` over 1, ``k8s_timeslicing``);
* workloads: every pod bound to a node that requests GPUs, grouped by what runs it:

  - an inference service: a Deployment or Argo Rollout (the owning ReplicaSet's name less the
    ``pod-template-hash``), a StatefulSet, a KServe InferenceService (``serving.kserve.io/inferenceservice``)
    or a LeaderWorkerSet (``leaderworkerset.sigs.k8s.io/name``; one unit per group of leader and workers);
  - a training job: a Job, JobSet or training operator job (PyTorchJob, MPIJob, ...), named by the JobSet
    or ``training.kubeflow.org/job-name`` label when there is one;
  - any other pod (bare pods, DaemonSets, Kubeflow notebooks) is a workload of its own.

  Each pod is one unit (replica or worker) unless said otherwise (a unit whose pod runs but is not Ready
  serves nothing: ``WorkloadInfo.unready``), and an alert naming a pod (the exporter's
  ``namespace``/``pod`` labels) is placed on the workload that runs it. A service also answers to its pods'
  ``app.kubernetes.io/name`` and ``app`` labels, which is what an inference server usually reports as its
  ``service``, unless another workload carries the same label;
* spare GPUs: the allocatable GPUs of Ready, schedulable nodes that no bound pod requests, whole GPUs only
  (a MIG slice is no room for a pod asking ``nvidia.com/gpu``, ``k8s_mig``; on a time-sliced node, the GPUs
  no replica is on).

The Kubernetes API says how many GPUs a pod got, not which: only the kubelet knows (its pod-resources API,
which the gpuwarden exporter and dcgm-exporter read to label each GPU's series with its pod). So the
indices come from those series when ``assignments`` is given (a PromQL query over the exporter's metrics,
read by the composition root); otherwise a pod that holds every GPU of its node holds them all, and a pod
sharing a node may be on any of the node's GPUs that no other pod is known to hold: its unit lists those with
the number it holds (``WorkloadInfo.sizes``), and ``capacity.units_hit`` counts it hit only when an alert
names it or its node is lost. ``ambiguous_pods`` says how many pods were placed so.

When a node dies its pods stay listed (phase Running, then Unknown or Failed, or Terminating) until the
node controller evicts them; an incident the node's failure opened must still know they ran there after
they are gone. So a pod that disappears, fails or is Unknown while its node is not Ready (or that failed
with a node reason: NodeLost, Shutdown, Terminated) stays a unit of its workload ``keep_ended_seconds``
with the GPUs it held, but only while the workload has fewer units than before the loss: once its
replacement runs, the service is whole again (a StatefulSet's or training operator's replacement takes the
lost pod's name: it is another pod, by its uid, and the lost one stays kept while it is Pending). So does a
pod that fails (phase Failed) on a healthy node: a training worker killed by an XID is exactly that, and
the incident of the XID must still say it stopped the job (a pod first seen failed, after a restart, only
when its status says it failed within the while).
A pod that ends otherwise on a healthy node (Succeeded, a rollout, a scale-down) is not kept. A node deleted
from the API while pods lost with it are kept stays listed as last read (state ``deleted``, no work). With
``keep_in`` the kept pods and their nodes' places are kept in the store too (``alerting.kept_inventory``), so
that a reader started later knows them: the API forgets a deleted node's pods with it; and so is each node as
last listed with its GPU pods (``alerting.k8s_kept``): a node deleted while no serve ran, not listed at the
first read after a start, has its pods lost at that read and is ``deleted`` while they are kept, as when
serve saw it go.

Pods are listed in pages (``limit``/``continue``, bound pods only: ``fieldSelector=spec.nodeName!=``) and
filtered page by page, so a cluster's many GPU-less pods are never all held at once; the filtering is also
done here, so a list that ignores selectors (the test stand-in) reads the same as a real API server. A list
whose continue token expired (``ListExpired``, 410 Gone) is read again from its first page at once, once;
nothing of the expired list is kept, and a second expiry fails the read (the caller keeps the last one).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from alerting.inventory import NodeInfo, StaticInventory, in_cluster
from alerting.k8s_assignments import Assignment, node_uuids
from alerting.k8s_kept import ListedRows, take_back
from alerting.k8s_mig import MigNode, MigNotices, mig_node, pod_slices, whole_gpu_resources
from alerting.k8s_resources import (
    mig_devices,
    node_gpus,
    node_ready,
    object_key,
    pod_finished_at,
    pod_gpus,
    pod_ready,
)
from alerting.k8s_timeslicing import (
    TimeSliceNotices,
    gpu_replicas,
    physical_gpus,
    shared_uncounted,
    whole_free,
)
from alerting.k8s_units import KeptPod as _Kept
from alerting.k8s_units import ListedPod as _Pod
from alerting.k8s_units import unit_workloads
from alerting.k8s_workloads import workload_of
from alerting.kept_inventory import Kept, KeptRecords, KeptSync, left_while_down
from alerting.topology import UNKNOWN
from gpuwarden.clock import Clock
from gpuwarden.errors import SourceError
from gpuwarden.model import WorkloadRef

logger = logging.getLogger(__name__)

Lister = Callable[[str], Iterable[dict[str, Any]]]
"""Every object of a resource (``nodes``, ``pods``) across namespaces, as it is read."""

DEFAULT_RACK_LABELS = ("topology.kubernetes.io/rack", "rack")
DEFAULT_GPU_RESOURCES = ("nvidia.com/gpu",)
_PLACED_PHASES = {"Pending", "Running"}
_ENDED_PHASES = {"Failed", "Unknown"}
_NODE_REASONS = {"NodeLost", "Shutdown", "Terminated", "NodeShutdown"}
PAGE = 500


class ListExpired(SourceError):
    """A list's ``continue`` token expired (HTTP 410 Gone): its pages cannot be resumed, only listed again."""


@dataclass(slots=True)
class _Read:
    nodes: list[NodeInfo] = field(default_factory=list)
    pods: list[_Pod] = field(default_factory=list)  # placed: bound and Pending or Running
    ended: list[_Pod] = field(default_factory=list)  # lost with their node, or failed for a node reason
    leaving: list[_Pod] = field(default_factory=list)  # Terminating on a healthy node: hold their GPUs
    ready: set[str] = field(default_factory=set)
    usable: dict[str, int] = field(default_factory=dict)  # Ready, schedulable node -> allocatable full GPUs
    states: dict[str, str] = field(default_factory=dict)  # node -> ready / notready, +cordoned, +no_gpus
    mig: dict[str, MigNode] = field(default_factory=dict)  # nodes whose counted GPUs include MIG slices
    shared: dict[str, int] = field(default_factory=dict)  # time-sliced node -> replicas per GPU
    uids: dict[str, str] = field(default_factory=dict)  # node -> its metadata.uid


def _place(
    seen: _Read, nodes: Mapping[str, NodeInfo], assigned: Sequence[Assignment]
) -> tuple[int, set[str]]:
    """Give each placed pod its GPUs (see the module text): the number of pods placed on a guess, and the MIG
    nodes with pods whose slices' GPUs are unknown and the time-sliced nodes with pods whose replicas' GPUs
    are, placed on every GPU of their node (``k8s_mig``, ``k8s_timeslicing``)."""
    pods, migs, shared = seen.pods, seen.mig, seen.shared
    known: dict[tuple[str, str, str], set[int]] = {}
    for a in assigned:
        if a.pod:
            known.setdefault((a.node, a.namespace, a.pod), set()).add(a.index)
    held: dict[str, set[int]] = {}
    for pod in pods:
        indices = known.get((pod.node, *pod.key))
        if indices:
            pod.gpus = frozenset(("", pod.node, i) for i in indices)  # in_cluster stamps the cluster
            if pod.slices or pod.node in shared:  # GPUs of its slices or replicas, which others may share
                pod.size = len(indices)
            else:
                held.setdefault(pod.node, set()).update(indices)
    ambiguous, unmapped = 0, set()
    for pod in [p for p in pods if not p.gpus]:
        info = nodes.get(pod.node)
        total = info.gpu_count if info is not None else pod.count
        if (pod.slices and pod.node in migs) or pod.node in shared:  # on some GPU of the node: the whole
            pod.gpus, pod.size = frozenset(("", pod.node, i) for i in range(total)), total
            unmapped.add(pod.node)
            continue
        free = [i for i in range(total) if i not in held.get(pod.node, set())]
        if len(free) > pod.count:
            ambiguous += 1  # more candidates than GPUs it holds: some of these are another pod's
        pod.gpus = frozenset(("", pod.node, i) for i in free)
    return ambiguous, unmapped


class KubernetesInventory:
    """Reads the inventory from the Kubernetes API; ``read`` lists nodes and bound pods once."""

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
        # Pods by ``_Pod.ident``: a pod created again under a lost one's name is another pod
        self._placed: dict[tuple[str, str, str], _Pod] = {}  # as last read
        self._units: dict[WorkloadRef, int] = {}  # units per workload, as last read
        self._kept: dict[tuple[str, str, str], _Kept] = {}
        self._expired: set[tuple[str, str, str]] = set()  # kept their while and still listed (Failed, ...)
        self._gpu_counts: dict[str, int] = {}  # the last GPU count each node reported
        self._uids: dict[str, str] = {}  # each node's uid as last read: one registered again has another
        self._nodes: dict[str, NodeInfo] = {}  # each node as last listed (a deleted one: see ``_deleted``)
        self._mig = MigNotices()
        self._shared = TimeSliceNotices()
        self.ambiguous_pods = 0
        self.relists = 0  # lists started again at once because their continue token expired
        self._keeper: KeptSync | None = None  # where kept pods and their nodes' places are kept (``keep_in``)
        self._listed: dict[str, float] = {}  # the nodes listed at the last read: since when (``keep_in``)
        self._rows = ListedRows()  # what is kept, as ``keep_in``'s records keep it

    def keep_in(self, records: KeptRecords) -> None:
        """Keep the kept pods and the places of their nodes in ``records`` too (``alerting.kept_inventory``),
        so that a reader started later (serve restarted, a standby taking over) knows them: a node deleted
        from the API takes its pods with it, and the API no longer says where they ran."""
        self._keeper = KeptSync(records, "kubernetes")

    def close(self) -> None:
        """Close the clients the reader was given (``on_close``)."""
        for close in self._on_close:
            close()

    def read(self) -> StaticInventory:
        """The cluster as its API shows it now, plus pods lost with their node less than a while ago."""
        now = self._clock.time()
        seen = self._read_listed()
        if self._keeper is not None and (stored := self._keeper.restore(self._cluster)):
            self._take_back(stored, seen, now)
        assigned = self._read_assignments()
        nodes = {n.name: n for n in seen.nodes}
        ambiguous = self.ambiguous_pods
        self.ambiguous_pods, unmapped = _place(seen, nodes, assigned)
        self._mig.unmapped(sorted(unmapped - set(seen.shared)))
        self._shared.unmapped(sorted(unmapped & set(seen.shared)))
        if self.ambiguous_pods and self.ambiguous_pods != ambiguous:  # said when it changes, not every read
            logger.info(
                "kubernetes inventory: %d pods share a node and their GPU indices are unknown; a GPU fault"
                " counts against one only when its alert names the pod (configure gpu_assignment_url)",
                self.ambiguous_pods,
            )
        uuids = node_uuids(assigned)
        node_list = _nodes(seen, uuids)
        placed = {p.ident: p for p in seen.pods}
        serving: dict[WorkloadRef, set[str]] = {}
        for pod in placed.values():
            if pod.running:
                serving.setdefault(pod.workload, set()).add(pod.unit)
        lost = self._lost(placed, seen)
        for pod in [*lost, *seen.ended]:
            if pod.ident in self._kept or pod.ident in self._expired:
                continue
            since = now
            if pod.failed_here and pod.ident not in self._placed:
                # Failed before this reader saw it run (a serve restart; a failure a day old, still listed):
                # kept only within its while of when it failed, when the status says.
                if pod.failed_at is None or now - pod.failed_at > self._keep:
                    continue
                since = pod.failed_at
            if pod.workload in self._units:
                before = self._units[pod.workload]
            else:  # first seen ended (a restart): it served beside the units serving now
                before = len(serving.get(pod.workload, set()) | {pod.unit})
            if not pod.gpus:  # never seen placed: its node's GPUs
                info = nodes.get(pod.node)
                pod.gpus = frozenset(("", pod.node, i) for i in range(info.gpu_count if info else 0))
                if pod.node in seen.shared:  # replicas of GPUs unknown: on all of them, as when placed
                    pod.size = len(pod.gpus)
            self._kept[pod.ident] = _Kept(since, self._placed.get(pod.ident, pod), before)
        self._placed, self._uids = placed, seen.uids
        listed = set(placed) | {p.ident for p in seen.ended}
        expired = {k for k, v in self._kept.items() if now - v.since > self._keep}
        self._expired = (self._expired | expired) & listed  # still listed: not kept a second time
        # Back (its node Ready again), or its name runs again (a StatefulSet's replacement): not kept; a
        # replacement still Pending serves nothing yet, so the lost pod stays a missing unit until it runs.
        taken = {p.key for p in seen.pods if p.running}
        self._kept = {
            k: v for k, v in self._kept.items() if k not in expired and k not in placed and k[:2] not in taken
        }
        # A node's last GPU count stands in while its device plugin is down; a node gone from the list
        # (autoscaled away: its successor has another name) is forgotten, unless a kept pod's node, which
        # may be listed again (re-registered before its plugin is up).
        still = {n.name for n in seen.nodes} | {k.pod.node for k in self._kept.values()}
        self._gpu_counts = {name: n for name, n in self._gpu_counts.items() if name in still}
        node_list.extend(self._deleted(node_list))
        self._keep_nodes(node_list, now)
        workloads = unit_workloads(list(placed.values()), list(self._kept.values()))
        self._units = {w.ref: len(w.units) for w in workloads}
        spare = {self._cluster: sum(n.free or 0 for n in node_list)}
        return StaticInventory(node_list, in_cluster(workloads, self._cluster), spare)

    def _deleted(self, listed: Sequence[NodeInfo]) -> list[NodeInfo]:
        """Nodes deleted from the API (``kubectl delete node``, the autoscaler) that kept pods were on: as
        last listed, state ``deleted``, taking no work, while those pods are kept, so that the alerts of the
        node's incident still find its cluster and rack, and with them the workloads it stopped."""
        names = {n.name for n in listed}
        gone = sorted({k.pod.node for k in self._kept.values()} - names)
        return [
            replace(self._nodes[name], state="deleted", usable=False, free=0, idle=frozenset())
            for name in gone
            if name in self._nodes
        ]

    def _keep_nodes(self, node_list: Sequence[NodeInfo], now: float) -> None:
        """Each node as listed now (``_deleted``), and what is kept saved where it changed (``keep_in``)."""
        self._nodes = {n.name: n for n in node_list}
        names = [n.name for n in node_list if n.state != "deleted"]
        self._listed = {name: self._listed.get(name, now) for name in names}
        if self._keeper is not None:
            rows = self._rows.rows(self._kept, self._nodes, self._listed, self._placed.values(), self._uids)
            self._keeper.persist(self._cluster, rows)

    def _lost(self, placed: Mapping[tuple[str, str, str], _Pod], seen: _Read) -> list[_Pod]:
        """The pods placed at the last read and gone now from a node that is not Ready, not listed, or not the
        node object it was (``_steady``)."""
        steady = self._steady(seen)
        for name in sorted(seen.ready - steady):
            logger.info(
                "kubernetes inventory: node %s was registered again (another uid) since the last read", name
            )
        return [p for p in self._placed.values() if p.ident not in placed and p.node not in steady]

    def _steady(self, seen: _Read) -> set[str]:
        """The Ready nodes that are the node objects of the last read: a pod gone from one was not lost with
        it. One deleted and registered again under its name since (GKE's auto-repair recreates a node's VM;
        a kubelet re-registers a node deleted under it) has another uid, and its pods went with the old."""
        renewed = {n for n, uid in seen.uids.items() if uid and self._uids.get(n, "") not in ("", uid)}
        return seen.ready - renewed

    def _take_back(self, stored: Kept, seen: _Read, now: float) -> None:
        """The pods and node places a reader before this one kept (``keep_in``); a pod this one keeps
        already stays as it keeps it, a node it lists as it lists it. The GPU pods it last saw placed on a
        node not Ready now count as placed at the last read, so that those of a node not listed now (deleted
        while no serve ran) are lost at this one (``alerting.k8s_kept``); on a Ready node a pod is lost at
        no read, and one that failed there is judged by when it failed, as before."""
        back = take_back(stored)
        for ident, kept in back.kept.items():
            self._kept.setdefault(ident, kept)
        self._nodes = {**back.nodes, **self._nodes}
        self._uids = {**back.uids, **self._uids}
        steady = self._steady(seen)
        for ident, pod in back.placed.items():
            if pod.node not in steady:
                self._placed.setdefault(ident, pod)
        self._listed = {**back.listed, **self._listed}
        pods_on = (pod.node for pod in back.placed.values())
        left_while_down("kubernetes", back.listed, {n.name for n in seen.nodes}, now, pods_on)

    def _read_listed(self) -> _Read:
        """``_read_api``, started again at once from the first page when a list's continue token expired
        (the API server keeps a paged list's snapshot only until etcd compacts past it, five minutes by
        default), as client-go's reflector does: once, so an expiry costs one more list, not a refresh
        interval. A second expiry fails the read: the last inventory stays, the next refresh tries again."""
        try:
            return self._read_api()
        except ListExpired as exc:
            self.relists += 1
            logger.warning(
                "kubernetes inventory: %s; listing again from the first page now (%d relists so far)",
                exc,
                self.relists,
            )
            return self._read_api()

    def _read_api(self) -> _Read:
        out = _Read()
        self._read_nodes(out)
        gpu_nodes = {n.name for n in out.nodes}
        for pod in self._list("pods"):
            on = str((pod.get("spec") or {}).get("nodeName") or "")
            if not on or on not in gpu_nodes:
                continue
            count = pod_gpus(pod, self._resources)
            if count == 0:
                continue
            meta = pod.get("metadata") or {}
            status = pod.get("status") or {}
            phase = str(status.get("phase", ""))
            ref, unit, aliases = workload_of(pod)
            uid = str(meta.get("uid") or "")
            found = _Pod(object_key(pod), on, count, ref, unit, aliases, size=count, uid=uid)
            if on in out.mig:
                found.slices = pod_slices(pod, self._resources, out.mig[on])
            node_lost = on not in out.ready
            if phase in _ENDED_PHASES or (meta.get("deletionTimestamp") and phase in _PLACED_PHASES):
                if node_lost or status.get("reason") in _NODE_REASONS:
                    out.ended.append(found)
                elif phase == "Failed":  # its own failure: an XID it died of, say (not Succeeded)
                    found.failed_here, found.failed_at = True, pod_finished_at(status)
                    out.ended.append(found)
                elif phase in _PLACED_PHASES:  # going away on a healthy node (a rollout): no replica, but
                    out.leaving.append(found)  # its GPUs are no one else's until the pod is gone
                continue  # else it ended on a healthy node (Succeeded): its GPUs are free
            if phase in _PLACED_PHASES:
                found.running = phase == "Running"
                found.ready = pod_ready(status)
                out.pods.append(found)
        return out

    def _read_nodes(self, out: _Read) -> None:
        """The nodes with GPUs into ``out``: their GPU count (a MIG node's physical GPUs when a label says,
        see ``k8s_mig``; a time-sliced node's, ``k8s_timeslicing``), rack, state and allocatable whole
        GPUs."""
        uncounted: dict[str, tuple[str, ...]] = {}
        partly: dict[str, tuple[str, ...]] = {}  # full GPUs counted, MIG slices not: their pods unplaced
        shared_left: list[str] = []  # GPUs handed out as nvidia.com/gpu.shared, not counted
        for node in self._list("nodes"):
            meta = node.get("metadata") or {}
            name = str(meta.get("name", ""))
            capacity = node_gpus(node, self._resources)
            mig = mig_node(node, self._resources)
            physical = mig.physical if mig is not None else None
            replicas = gpu_replicas(node) if mig is None else 1
            if replicas > 1 and capacity:  # time-sliced: its capacity counts replicas
                physical = physical_gpus(node, capacity, replicas)
            count = (
                physical or capacity or self._gpu_counts.get(name, 0)
            )  # device plugin down: GPUs still there
            if not name or count == 0:
                if devices := mig_devices(node, self._resources):
                    uncounted[name] = devices
                elif shared_uncounted(node, self._resources):
                    shared_left.append(name)
                continue
            if devices := mig_devices(node, self._resources):
                partly[name] = devices
            self._gpu_counts[name] = count
            if mig is not None:
                out.mig[name] = mig
            if replicas > 1:
                out.shared[name] = replicas
            labels = meta.get("labels") or {}
            rack = next((str(labels[k]) for k in self._rack_labels if labels.get(k)), UNKNOWN)
            out.nodes.append(NodeInfo(name, self._cluster, rack, count))
            out.uids[name] = str(meta.get("uid") or "")
            cordoned = bool((node.get("spec") or {}).get("unschedulable"))
            words = ["ready" if node_ready(node) else "notready", *(["cordoned"] if cordoned else [])]
            out.states[name] = "+".join([*words, *([] if capacity else ["no_gpus"])])
            if node_ready(node):
                out.ready.add(name)
                if capacity and not cordoned:  # MIG slices are no GPU for a pod asking whole ones
                    whole = self._resources if mig is None else whole_gpu_resources(self._resources, mig)
                    out.usable[name] = node_gpus(node, whole, "allocatable")
        self._mig.left_out(uncounted)
        self._shared.left_out(shared_left)
        self._mig.partly_left_out(partly)
        self._mig.uncounted([n for n, m in out.mig.items() if m.physical is None])

    def _read_assignments(self) -> list[Assignment]:
        if self._assignments is None:
            return []
        try:
            return list(self._assignments())
        except SourceError as exc:  # the API's view still holds; indices fall back to the guess
            logger.warning("kubernetes inventory: GPU assignments unreadable (%s); guessing indices", exc)
            return []


def _nodes(seen: _Read, uuids: Mapping[str, tuple[str, ...]]) -> list[NodeInfo]:
    """The nodes with their state and free GPUs: on a Ready, schedulable node, its allocatable whole GPUs
    (not MIG slices, ``k8s_mig``) that no bound pod requests (a Terminating one included, as the scheduler
    counts it; on a time-sliced node those no replica is on, ``k8s_timeslicing``), at most its GPUs,
    somewhere among the indices no pod is known to hold."""
    requested: dict[str, int] = {}
    known: dict[str, set[int]] = {}
    for pod in [*seen.pods, *seen.leaving]:
        requested[pod.node] = requested.get(pod.node, 0) + pod.count - pod.slices
        if len(pod.gpus) == pod.size:  # its indices are known (or its MIG slices may be on any GPU)
            known.setdefault(pod.node, set()).update(i for _, _, i in pod.gpus)
    out = []
    for n in seen.nodes:
        usable = n.name in seen.usable
        left = whole_free(seen.usable.get(n.name, 0), requested.get(n.name, 0), seen.shared.get(n.name, 1))
        free = min(n.gpu_count, left)
        idle = frozenset(range(n.gpu_count)) - known.get(n.name, set()) if free else frozenset()
        state = seen.states.get(n.name, "")
        out.append(
            replace(n, gpu_uuids=uuids.get(n.name, ()), state=state, usable=usable, free=free, idle=idle)
        )
    return out

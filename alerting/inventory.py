"""What the engine may know about the fleet beyond alert labels: nodes, racks, GPUs and workloads.

The composition root adapts a real source (the simulated fleet, Slurm, Kubernetes) to ``Inventory``;
``StaticInventory`` holds plain lists and serves tests and simple deployments; ``alerting.inventory_file``
reads and writes it as a file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from gpuwarden.model import WorkloadKind, WorkloadRef

GpuKey = tuple[str, str, int]
"""A GPU as (cluster, node name, index): node names repeat from one cluster to the next. A source that reads
one cluster may leave the cluster empty; ``in_cluster`` stamps it, and ``StaticInventory`` gives a key still
without one the cluster of the one node of that name."""


RUNNING = "running"


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A GPU node and where it sits."""

    name: str
    cluster: str
    rack: str
    gpu_count: int
    gpu_uuids: tuple[str, ...] = ()
    # As its source says it (Slurm: ``mixed``, ``idle+maintenance+reserved``; Kubernetes: ``ready``,
    # ``ready+cordoned``, ``notready``); empty when unknown (an inventory file).
    state: str = ""
    usable: bool = True  # whether it takes new work: not down, drained, in maintenance, reserved, cordoned
    # GPUs a new job could get on it now: 0 on a node that takes no new work (or whose CPUs are all taken,
    # Slurm's ALLOCATED); None where the source does not say per node (an inventory file: the cluster's
    # ``spare`` counts then).
    free: int | None = None
    # Where those free GPUs are: exactly these indices when as many as ``free``, else the indices no
    # workload is known to hold (Kubernetes pods whose GPU indices are unknown hold some of them).
    idle: frozenset[int] = frozenset()
    partitions: tuple[str, ...] = ()  # Slurm partitions (empty: a Kubernetes node, any workload may use it)
    # Other names alerts give it: Slurm's NodeHostname and NodeAddr where they differ from its NodeName (an
    # exporter scraped by address: `instance="10.0.0.7:9100"`; DCGM's `Hostname`).
    addresses: tuple[str, ...] = ()
    features: frozenset[str] = frozenset()  # Slurm's active node features, which a job's constraint matches


@dataclass(frozen=True, slots=True)
class WorkloadInfo:
    """A workload and its units: the replicas of a service or the ranks of a training job."""

    ref: WorkloadRef
    units: tuple[frozenset[GpuKey], ...]
    aliases: tuple[str, ...] = ()  # other names alerts use for it (a Slurm job's id besides its name)
    pods: tuple[str, ...] = ()  # its pods' names: an alert naming one of them (namespace, pod) points here
    state: str = RUNNING  # as its source says it: Slurm's job state (lower case), Kubernetes' pod phases
    partitions: tuple[str, ...] = ()  # where it may start again (Slurm partitions; empty: anywhere)
    # The only nodes it may start again on (Slurm's ReqNodeList, ``sbatch -w``; empty: any of its
    # partitions'), and nodes it may not (ExcNodeList, ``sbatch -x``).
    nodes: tuple[str, ...] = ()
    excluded_nodes: tuple[str, ...] = ()
    constraint: str = ""  # Slurm's ``--constraint`` (``a100&ib``), as ``squeue`` says it; empty: none
    # Per unit, how many GPUs it holds, where that is fewer than the keys it lists: those are then the GPUs it
    # may be on (a Kubernetes pod sharing a node whose indices are unknown, a Slurm job that does not say
    # which). Empty: every unit holds all its keys.
    sizes: tuple[int, ...] = ()
    unit_pods: tuple[tuple[str, ...], ...] = ()  # per unit, its pods (empty: not known per unit)
    group: str = ""  # a name it answers to with others, all of them together (a Slurm array job's id)
    # How many of its units stopped abnormally (a node failure, a crash) and are kept a while with the GPUs
    # they held, so that the incident of the fault still knows what it stopped: all of them for a kept Slurm
    # job; 0 for a workload that runs, and for one that ended normally (which is not listed at all).
    kept: int = 0
    # The units of a service that serve nothing though their pods run (Kubernetes: a pod whose Ready
    # condition is False, crash-looping or failing its readiness probe): a fault that takes other replicas
    # of the service takes what was left, so they count as lost with it (``alerting.impact``).
    unready: tuple[int, ...] = ()
    # GPUs it asks on each of its nodes (Slurm's ``tres_per_node``, ``--gres=gpu:8``): it starts again only
    # on as many nodes as it holds, each with that many; 0: not asked per node (``--gpus``): GPUs are counted.
    per_node: int = 0
    # The fewest nodes it asked (Slurm's ``--nodes=2-4``: 2); Slurm starts it again on as few, each with
    # ``per_node`` GPUs. 0: as many as it holds.
    min_nodes: int = 0
    # GPUs that pending jobs ahead of it in its partitions ask (``alerting.slurm_queue``): Slurm gives free
    # GPUs to them before it starts this one again. 0: none, or not known (Kubernetes, inventory files).
    queued_ahead: int = 0

    @property
    def gpus(self) -> frozenset[GpuKey]:
        """Every GPU any unit runs on (or may run on, see ``sizes``)."""
        return frozenset().union(*self.units) if self.units else frozenset()

    def size(self, unit: int) -> int:
        """How many GPUs unit ``unit`` holds."""
        return self.sizes[unit] if self.sizes else len(self.units[unit])

    @property
    def held(self) -> int:
        """How many GPUs the workload holds."""
        return sum(self.size(i) for i in range(len(self.units)))


class Inventory(Protocol):
    """Topology and placement the engine uses for correlation and impact."""

    def node(self, name: str, cluster: str = "") -> NodeInfo | None:
        """A node by name in ``cluster``, or, when ``cluster`` is empty, the one node of that name; None when
        unknown (or when two clusters have a node of that name and none was asked for)."""
        ...

    def gpu_by_uuid(self, uuid: str) -> GpuKey | None:
        """Where a GPU UUID lives."""
        ...

    def nodes_in(self, cluster: str, rack: str | None = None) -> Sequence[NodeInfo]:
        """The nodes of a cluster, or of one rack of it."""
        ...

    def workloads(self) -> Sequence[WorkloadInfo]:
        """Every known workload with its placement."""
        ...

    def spare_gpus(self, cluster: str) -> int:
        """Healthy GPUs of the cluster that no workload uses."""
        ...

    def free_gpus(self, cluster: str, partitions: Sequence[str] = ()) -> int | None:
        """Free GPUs of the cluster's nodes that take new work, in one of these partitions (none: any); None
        where the source does not say per node (``NodeInfo.free``)."""
        ...

    def idle_gpus(self, cluster: str) -> frozenset[GpuKey]:
        """The idle GPUs (``NodeInfo.idle``) of the cluster's nodes that take new work and have free GPUs."""
        ...

    def workloads_on(self, gpus: Iterable[GpuKey]) -> list[WorkloadInfo]:
        """Workloads with at least one unit on these GPUs, in ``workloads()`` order."""
        ...

    def placement(self, ref: WorkloadRef) -> frozenset[GpuKey]:
        """Every GPU the workload runs on (empty when unknown)."""
        ...

    def workload(self, ref: WorkloadRef) -> WorkloadInfo | None:
        """The workload of this ref as listed (the first, should two sources list it), or None."""
        ...

    def find_group(self, kind: WorkloadKind, name: str, cluster: str = "") -> list[WorkloadRef]:
        """The workloads that answer to ``name`` together (the tasks of a Slurm array job), in ``cluster``
        (or of no known cluster) unless it is empty; empty when none does."""
        ...

    def namespaces(self, kind: WorkloadKind, name: str) -> frozenset[str]:
        """The namespaces that have a workload of this kind and name (in any cluster)."""
        ...

    def clusters(self) -> frozenset[str]:
        """The names of the clusters its nodes and workloads are in."""
        ...

    def find_workload(
        self,
        kind: WorkloadKind,
        name: str,
        namespace: str = "",
        cluster: str = "",
        *,
        one_namespace: bool = False,
    ) -> WorkloadRef | None:
        """The known workload of this kind and name (in ``namespace`` and ``cluster`` unless they are empty),
        or None; for ``POD``, also the workload that runs a pod of that name. ``one_namespace``: with no
        namespace given, None when workloads of that name are in two namespaces."""
        ...


@dataclass
class StaticInventory:
    """An ``Inventory`` over fixed lists."""

    node_list: Sequence[NodeInfo] = ()
    workload_list: Sequence[WorkloadInfo] = ()
    spare: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Indexes: correlation asks these questions for every new alert against every open incident.
        self._nodes = {(n.cluster, n.name): n for n in self.node_list}
        self._by_name: dict[str, list[NodeInfo]] = {}
        self._by_address: dict[str, list[NodeInfo]] = {}
        for n in self.node_list:
            self._by_name.setdefault(n.name, []).append(n)
            for address in n.addresses:
                self._by_address.setdefault(address, []).append(n)
        self._uuids = {u: (n.cluster, n.name, i) for n in self.node_list for i, u in enumerate(n.gpu_uuids)}
        self._clusters = frozenset(n.cluster for n in self.node_list if n.cluster) | frozenset(
            w.ref.cluster for w in self.workload_list if w.ref.cluster
        )
        if any(not gpu[0] for w in self.workload_list for gpu in w.gpus):
            self.workload_list = [self._settled(w) for w in self.workload_list]
        self._racks: dict[tuple[str, str | None], list[NodeInfo]] = {}
        for n in self.node_list:
            self._racks.setdefault((n.cluster, n.rack), []).append(n)
            self._racks.setdefault((n.cluster, None), []).append(n)
        self._on_gpu: dict[GpuKey, list[int]] = {}
        self._placement: dict[WorkloadRef, frozenset[GpuKey]] = {}
        self._infos: dict[WorkloadRef, WorkloadInfo] = {}
        self._groups: dict[tuple[WorkloadKind, str], list[WorkloadRef]] = {}
        self._free: dict[tuple[str, frozenset[str]], int | None] = {}
        self._idle: dict[str, frozenset[GpuKey]] = {}
        self._named: dict[tuple[WorkloadKind, str], list[WorkloadRef]] = {}
        self._aliases: dict[tuple[WorkloadKind, str], list[WorkloadRef]] = {}
        for position, w in enumerate(self.workload_list):
            self._named.setdefault((w.ref.kind, w.ref.name), []).append(w.ref)
            for pod in w.pods:
                self._named.setdefault((WorkloadKind.POD, pod), []).append(w.ref)
            for alias in w.aliases:
                self._aliases.setdefault((w.ref.kind, alias), []).append(w.ref)
            self._placement[w.ref] = self._placement.get(w.ref, frozenset()) | w.gpus
            self._infos.setdefault(w.ref, w)
            if w.group:
                self._groups.setdefault((w.ref.kind, w.group), []).append(w.ref)
            for gpu in w.gpus:
                self._on_gpu.setdefault(gpu, []).append(position)

    def _settled(self, w: WorkloadInfo) -> WorkloadInfo:
        """``w`` with each GPU key read without a cluster given the cluster of the one node of its name."""

        def cluster_of(name: str) -> str:
            info = self.node(name)
            return info.cluster if info is not None else ""

        return replace(w, units=_clustered(w.units, cluster_of))

    def node(self, name: str, cluster: str = "") -> NodeInfo | None:
        """A node by name in ``cluster``; without one, the one node of that name. A name no node has finds
        the one node (of ``cluster``) with that host name or address."""
        if cluster:
            named = self._nodes.get((cluster, name))
            if named is not None:
                return named
            found: Sequence[NodeInfo] = ()
        else:
            found = self._by_name.get(name, ())
        if not found:
            found = [n for n in self._by_address.get(name, ()) if n.cluster == cluster or not cluster]
        return found[0] if len(found) == 1 else None

    def gpu_by_uuid(self, uuid: str) -> GpuKey | None:
        """Where a GPU UUID lives."""
        return self._uuids.get(uuid)

    def nodes_in(self, cluster: str, rack: str | None = None) -> Sequence[NodeInfo]:
        """Nodes of a cluster or rack."""
        return self._racks.get((cluster, rack), [])

    def workloads(self) -> Sequence[WorkloadInfo]:
        """All workloads."""
        return self.workload_list

    def spare_gpus(self, cluster: str) -> int:
        """Spare GPUs as configured (0 when not given)."""
        return self.spare.get(cluster, 0)

    def free_gpus(self, cluster: str, partitions: Sequence[str] = ()) -> int | None:
        """Free GPUs of usable nodes in these partitions (none: any), per node as the source said; None when
        it did not (asked for every stopped job: counted once per cluster and partitions)."""
        key = (cluster, frozenset(partitions))
        if key not in self._free:
            nodes = self._racks.get((cluster, None), [])
            if not nodes or any(n.free is None for n in nodes):
                self._free[key] = None
            else:
                self._free[key] = sum(
                    n.free or 0
                    for n in nodes
                    if n.usable and (not partitions or not key[1].isdisjoint(n.partitions))
                )
        return self._free[key]

    def idle_gpus(self, cluster: str) -> frozenset[GpuKey]:
        """The idle GPUs of the cluster's usable nodes with free GPUs (kept: asked for every stopped job, with
        every open incident's lost GPUs, which it narrows to those that count against a node's free ones)."""
        idle = self._idle.get(cluster)
        if idle is None:
            nodes = self._racks.get((cluster, None), [])
            idle = frozenset((n.cluster, n.name, i) for n in nodes if n.usable and n.free for i in n.idle)
            self._idle[cluster] = idle
        return idle

    def workloads_on(self, gpus: Iterable[GpuKey]) -> list[WorkloadInfo]:
        """Workloads with at least one unit on these GPUs, in ``workload_list`` order."""
        found = {p for gpu in gpus for p in self._on_gpu.get(gpu, ())}
        return [self.workload_list[p] for p in sorted(found)]

    def placement(self, ref: WorkloadRef) -> frozenset[GpuKey]:
        """Every GPU the workload runs on (empty when unknown)."""
        return self._placement.get(ref, frozenset())

    def workload(self, ref: WorkloadRef) -> WorkloadInfo | None:
        """The workload of this ref as listed first, or None."""
        return self._infos.get(ref)

    def find_group(self, kind: WorkloadKind, name: str, cluster: str = "") -> list[WorkloadRef]:
        """The workloads of group ``name``: in ``cluster`` or of no known cluster; without a cluster, only
        when they are all of one cluster."""
        refs = self._groups.get((kind, name), [])
        if not cluster:
            return list(refs) if len({r.cluster for r in refs if r.cluster}) <= 1 else []
        return [r for r in refs if r.cluster in (cluster, "")]

    def clusters(self) -> frozenset[str]:
        """The names of the clusters its nodes and workloads are in."""
        return self._clusters

    def namespaces(self, kind: WorkloadKind, name: str) -> frozenset[str]:
        """The namespaces that have a workload of this kind and name (in any cluster)."""
        return frozenset(
            r.namespace for r in self._named.get((kind, name), ()) if (r.kind, r.name) == (kind, name)
        )

    def find_workload(
        self,
        kind: WorkloadKind,
        name: str,
        namespace: str = "",
        cluster: str = "",
        *,
        one_namespace: bool = False,
    ) -> WorkloadRef | None:
        """The workload of this kind and name (in ``namespace`` unless it is empty: then the first listed, or
        with ``one_namespace`` none when two namespaces have one), else the one workload that answers to it
        as an alias (an alias several carry names none of them).

        Clusters: with ``cluster`` given, a workload of that cluster first, else one of no known cluster;
        without it, a name that workloads of two clusters share names none of them (which one, it cannot
        say)."""
        named = [r for r in self._named.get((kind, name), ()) if namespace in ("", r.namespace)]
        if one_namespace and not namespace:
            named = [r for r in named if cluster in ("", r.cluster) or not r.cluster]
            if len({r.namespace for r in named}) > 1:
                return None
        found = _in_cluster(named, cluster)
        if found is not None or (named and not cluster):  # found, or a name two clusters share
            return found
        aliased = {r for r in self._aliases.get((kind, name), ()) if namespace in ("", r.namespace)}
        if not cluster:
            return aliased.pop() if len(aliased) == 1 else None
        for tier in ({r for r in aliased if r.cluster == cluster}, {r for r in aliased if not r.cluster}):
            if tier:
                return tier.pop() if len(tier) == 1 else None
        return None


def _in_cluster(refs: Sequence[WorkloadRef], cluster: str) -> WorkloadRef | None:
    """The first of ``refs`` in ``cluster`` (or of no known cluster); without a cluster, the first, unless
    the refs belong to two clusters."""
    if not cluster:
        clusters = {r.cluster for r in refs if r.cluster}
        return refs[0] if refs and len(clusters) <= 1 else None
    exact = [r for r in refs if r.cluster == cluster]
    unknown = [r for r in refs if not r.cluster]
    chosen = exact or unknown
    return chosen[0] if chosen else None


def in_cluster(workloads: Iterable[WorkloadInfo], cluster: str) -> list[WorkloadInfo]:
    """A cluster's workloads as its source read them, each ref and GPU key carrying that cluster (Slurm job
    ids, Kubernetes names and node names repeat from one cluster to the next)."""
    return [_stamped(w, cluster) for w in workloads]


def _stamped(w: WorkloadInfo, cluster: str) -> WorkloadInfo:
    ref = w.ref if w.ref.cluster else replace(w.ref, cluster=cluster)
    return replace(w, ref=ref, units=_clustered(w.units, lambda _: cluster))


def _clustered(
    units: tuple[frozenset[GpuKey], ...], cluster_of: Callable[[str], str]
) -> tuple[frozenset[GpuKey], ...]:
    """``units`` with each GPU key read without a cluster given ``cluster_of`` its node ("": still none)."""
    return tuple(frozenset(g if g[0] else (cluster_of(g[1]), g[1], g[2]) for g in unit) for unit in units)


def merge_inventories(parts: Sequence[StaticInventory]) -> StaticInventory:
    """One inventory of several sources (a Kubernetes inference cluster and a Slurm training cluster): their
    nodes (a node two sources list in one cluster is the first one's; two clusters may each have a node of
    one name), workloads and spare GPUs per cluster."""
    if len(parts) == 1:
        return parts[0]
    nodes: dict[tuple[str, str], NodeInfo] = {}
    spare: dict[str, int] = {}
    for part in parts:
        for n in part.node_list:
            nodes.setdefault((n.cluster, n.name), n)
        for cluster, count in part.spare.items():
            spare[cluster] = spare.get(cluster, 0) + count
    return StaticInventory(list(nodes.values()), [w for p in parts for w in p.workload_list], spare)


def workloads_on(inventory: Inventory, gpus: Iterable[GpuKey]) -> list[WorkloadInfo]:
    """Workloads with at least one unit on these GPUs."""
    return inventory.workloads_on(gpus)

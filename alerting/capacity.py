"""What a loss of GPUs takes from workloads, and whether training jobs that a fault stopped can start again:
the capacity that tells DESIGN.md's P0 ("a training job fully stopped with no spare capacity") from its P1
("stalled by one fatal GPU").

A unit (a replica, a rank) placed exactly is hit when one of its GPUs is lost. A unit whose GPU indices are
unknown (``WorkloadInfo.sizes``: a Kubernetes pod sharing a node, a Slurm job that does not say which GPUs)
is hit only when what is known says so: an alert on the lost GPU names one of its pods (dcgm-exporter's
``namespace``/``pod`` labels), or more of the GPUs it may be on are lost than it can stay clear of (its whole
node down). Units of one workload that may be on the same GPUs count together: two replicas filling a node
hold all its GPUs, so one lost GPU there is one replica lost though no alert says whose. A fault on an idle
GPU beside it, with no pod named, does not stop it.

A job can start again when the free GPUs it may use (on nodes that take new work, in one of its partitions,
among the nodes it is pinned to and not among those it excludes (Slurm's ReqNodeList and ExcNodeList), with
the features its constraint asks for as ``alerting.constraints`` reads it per node, not lost by any open
incident) plus its own GPUs that are still healthy (on such nodes, not lost) are at least the GPUs it
holds. A requeued job's GPUs that Slurm freed are its own: they count once, for itself, never as spare
beyond its size.

A job that asks its GPUs per node (``WorkloadInfo.per_node``: Slurm's ``--gres=gpu:8``, ``tres_per_node``)
and held N nodes also needs N distinct nodes it may use (or the fewest it asked, ``--nodes=1-2``: 1, and only
their GPUs: ``WorkloadInfo.min_nodes``), each with that many GPUs for it: the node's free
GPUs less the idle ones an open incident took, plus its own healthy GPUs there. One free GPU on each of 16
nodes is no room for ``--nodes=2 --gres=gpu:8``. A job that asks a total (``--gpus=16``, ``per_node`` 0)
has its GPUs counted, wherever they are.

Several jobs must fit at once, each on the nodes it may use (``alerting.sharing``): a node only one of them
may use is no capacity for another. Together, the exact fit is of GPU counts; each job's whole-node fit is
checked for that job alone. Both are necessary, neither is sufficient: two jobs that each find their whole
nodes may both want the same ones (joint whole-node packing is not modelled), and GPU types, CPUs and memory
per node are not read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from alerting.constraints import satisfies
from alerting.inventory import GpuKey, Inventory, NodeInfo, WorkloadInfo
from alerting.sharing import all_met
from alerting.topology import Path
from gpuwarden.model import WorkloadRef

Node = tuple[str, str]  # (cluster, node name)
PodSet = frozenset[tuple[str, str]]  # (namespace, pod) pairs
_NONE: PodSet = frozenset()


def units_hit(
    info: WorkloadInfo, lost: AbstractSet[GpuKey], pods_on: Mapping[GpuKey, PodSet] | None = None
) -> list[int]:
    """The units of ``info`` that a loss surely takes (see the module text); ``pods_on``: GPU -> the
    namespaces and pods the live alerts on lost GPUs name (several on a MIG GPU, one per instance). A GPU
    that alerts give only to other pods is not among the GPUs a unit may be on."""
    named = pods_on or {}
    out = []
    shared: dict[frozenset[GpuKey], list[int]] = {}  # units whose indices are unknown, by where they may be
    for i, unit in enumerate(info.units):
        taken = unit & lost
        if not taken:
            continue
        size = info.size(i)
        if size >= len(unit):
            out.append(i)
            continue
        shared.setdefault(unit, []).append(i)
        mine = _pods_of(info, [i])
        if any(named.get(g, _NONE) & mine for g in taken):
            out.append(i)
            continue
        candidates = {g for g in unit if g not in named or named[g] & mine}
        if len(taken & candidates) > len(candidates) - size:
            out.append(i)
    for unit, group in shared.items():
        if len(group) > 1:  # a unit alone was judged just above, with the same count
            out.extend(_more_hit(info, unit, group, lost=lost, named=named, hit=set(out)))
    return sorted(out)


def _pods_of(info: WorkloadInfo, units: Iterable[int]) -> set[tuple[str, str]]:
    if not info.unit_pods:
        return set()
    return {(info.ref.namespace, pod) for i in units for pod in info.unit_pods[i]}


def _more_hit(
    info: WorkloadInfo,
    unit: frozenset[GpuKey],
    group: Sequence[int],
    *,
    lost: AbstractSet[GpuKey],
    named: Mapping[GpuKey, PodSet],
    hit: AbstractSet[int],
) -> list[int]:
    """Units of ``group`` (all may be on the same GPUs ``unit``) surely hit beyond ``hit``, counted together:
    two replicas that fill a node hold every GPU of it, so a lost one is one of theirs though no alert says
    whose. The lost GPUs that cannot all be elsewhere need at least as many units as hold them, the largest
    first; which of those units it is stays unknown, so the largest are named."""
    mine = _pods_of(info, group)
    candidates = {g for g in unit if g not in named or named[g] & mine}
    held = sum(info.size(i) for i in group)
    taken = len(lost & candidates)
    surely = min(
        taken, taken - (len(candidates) - held)
    )  # an alert naming another pod there can make it more
    if surely <= 0:
        return []
    needed = 0
    for size in sorted((info.size(i) for i in group), reverse=True):
        needed += 1
        surely -= size
        if surely <= 0:
            break
    already = [i for i in group if i in hit]
    rest = sorted((i for i in group if i not in hit), key=lambda i: -info.size(i))
    return rest[: max(0, needed - len(already))]


def gpus_lost(info: WorkloadInfo, units: Iterable[int], lost: AbstractSet[GpuKey]) -> int:
    """How many GPUs these units of ``info`` lost (at most what each holds)."""
    return sum(min(info.size(i), len(info.units[i] & lost)) for i in units)


def has_spare(
    inventory: Inventory,
    root_path: Path,
    stopped: Mapping[WorkloadRef, int],
    assume: bool,
    lost: AbstractSet[GpuKey],
) -> bool:
    """Whether the stopped jobs (with the GPUs each lost) can start again, ``lost`` being every GPU the open
    incidents took. Per node where the inventory says which GPUs are free (``can_restart``); else (an
    inventory file) whether the clusters' spare GPUs cover what the jobs lost: the root's cluster, or, for an
    incident rooted at a job (a stall with no fault found under it), the clusters the jobs run in, counting
    what each job lost in ``lost``; ``assume`` where the inventory knows none of them."""
    restart = can_restart(inventory, stopped, lost)
    if restart is not None:
        return restart
    if root_path:
        clusters = {root_path[0]}
    else:
        clusters = set()
        for ref in stopped:
            clusters |= {key[0] for key in inventory.placement(ref)} or (
                {ref.cluster} if ref.cluster else set()
            )
    known = [c for c in clusters if inventory.nodes_in(c)]
    if not known:
        return assume
    # What each job lost in every open incident (a GPU here, a node in another): all of it must come back.
    need = max(1, sum(max(n, len(inventory.placement(ref) & lost)) for ref, n in stopped.items()))
    return all(inventory.spare_gpus(c) >= need for c in known)


def can_restart(inventory: Inventory, jobs: Iterable[WorkloadRef], lost: AbstractSet[GpuKey]) -> bool | None:
    """Whether every job can start again, each alone and all of them together (they compete for the same free
    GPUs, each only for those of the nodes it may use); None when the inventory does not know a job or does
    not say per node which GPUs are free."""
    wants: dict[tuple[Reach, frozenset[str]], int] = {}  # GPUs wanted beyond their own, by where they may go
    frees: dict[tuple[Reach, frozenset[str]], int] = {}  # the free GPUs of each such place, counted once
    for ref in jobs:
        info = inventory.workload(ref)
        if info is None:
            return None
        reach, clusters = Reach.of(info), frozenset(_clusters(ref, info))
        free = frees.get((reach, clusters))
        if free is None:
            free = _free(inventory, clusters, reach, lost)
            if free is None:
                return None
            frees[reach, clusters] = free
        own = _own_healthy(inventory, info, lost)
        want = _needed_gpus(info) - sum(own.values())
        if free - info.queued_ahead < want:  # pending jobs ahead of it take free GPUs first
            return False
        if info.per_node and not _whole_nodes_fit(inventory, info, (reach, clusters), own, lost):
            return False
        if want > 0:
            wants[reach, clusters] = wants.get((reach, clusters), 0) + want
    if len(wants) <= 1:
        return all(frees[place] >= want for place, want in wants.items())
    return _all_fit(inventory, wants, lost)


def _all_fit(
    inventory: Inventory, wants: Mapping[tuple[Reach, frozenset[str]], int], lost: AbstractSet[GpuKey]
) -> bool:
    """Whether the GPUs wanted from different places can all be had at once: each node's free GPUs go to the
    jobs that may use it, pooled by which jobs those are (a job's constraint or node list keeps it off nodes
    another may use: adding up what any of them may use would count a node twice)."""
    places = list(wants)
    pools: dict[frozenset[int], int] = {}
    for cluster in frozenset().union(*(clusters for _, clusters in places)):
        for node in inventory.nodes_in(cluster):
            free = (node.free or 0) - _idle_lost(node, lost) if node.usable else 0
            if free <= 0:
                continue
            users = frozenset(
                i for i, (reach, clusters) in enumerate(places) if cluster in clusters and reach.allows(node)
            )
            pools[users] = pools.get(users, 0) + free
    return all_met([wants[place] for place in places], pools)


def _clusters(ref: WorkloadRef, info: WorkloadInfo) -> set[str]:
    return {key[0] for key in info.gpus} or {ref.cluster}


@dataclass(frozen=True, slots=True)
class Reach:
    """The nodes a job may start again on: in one of its partitions (none: any), among its nodes (Slurm's
    ReqNodeList; None: any), not among its excluded ones (ExcNodeList), with the features its constraint
    asks for (``satisfies``)."""

    partitions: frozenset[str] = frozenset()
    nodes: frozenset[str] | None = None
    excluded: frozenset[str] = frozenset()
    constraint: str = ""

    @classmethod
    def of(cls, info: WorkloadInfo) -> Reach:
        """Where ``info`` may start again."""
        nodes = frozenset(info.nodes) or None
        return cls(frozenset(info.partitions), nodes, frozenset(info.excluded_nodes), info.constraint)

    def allows(self, node: NodeInfo) -> bool:
        """Whether the job may run on ``node``."""
        if self.partitions and self.partitions.isdisjoint(node.partitions):
            return False
        if self.nodes is not None and node.name not in self.nodes:
            return False
        return node.name not in self.excluded and satisfies(self.constraint, node.features)


def _free(
    inventory: Inventory, clusters: Iterable[str], reach: Reach, lost: AbstractSet[GpuKey]
) -> int | None:
    """Free GPUs of usable nodes of these clusters that the job may use (``reach``), less those an open
    incident took (counted against a node's free GPUs first where their indices are not known exactly);
    None when the inventory does not say per node."""
    total = 0
    for cluster in clusters:
        free = _free_in(inventory, cluster, reach)
        if free is None:
            return None
        total += free
        # Only a lost GPU idle on a node with free ones counts against them: looked for among those (in C),
        # not among every GPU the open incidents took, which made a refresh quadratic in them.
        taken: Counter[str] = Counter(key[1] for key in inventory.idle_gpus(cluster).intersection(lost))
        for name, count in taken.items():
            node = inventory.node(name, cluster)
            if node is not None and reach.allows(node):
                total -= min(node.free or 0, count)
    return total


def _idle_lost(node: NodeInfo, lost: AbstractSet[GpuKey]) -> int:
    """How many of the node's free GPUs an open incident took (its idle ones that are lost)."""
    idle_lost = sum(1 for index in node.idle if (node.cluster, node.name, index) in lost)
    return min(node.free or 0, idle_lost)


def _free_in(inventory: Inventory, cluster: str, reach: Reach) -> int | None:
    """Free GPUs of the cluster's usable nodes the job may use. The inventory counts (and keeps) them by
    partitions once per cluster for every stopped job; a job's own node list is looked up node by node, and a
    constraint is checked on every node of the cluster."""
    free = inventory.free_gpus(cluster, tuple(sorted(reach.partitions)))
    if free is None or (reach.nodes is None and not reach.excluded and not reach.constraint):
        return free
    if reach.nodes is not None:
        nodes = _named(inventory, cluster, reach.nodes)
    elif reach.constraint:
        nodes = [n for n in inventory.nodes_in(cluster) if n.usable]
    else:  # all but the excluded ones
        partitions = Reach(reach.partitions)
        return free - sum(
            n.free or 0 for n in _named(inventory, cluster, reach.excluded) if partitions.allows(n)
        )
    return sum(n.free or 0 for n in nodes if reach.allows(n))


def _named(inventory: Inventory, cluster: str, names: Iterable[str]) -> list[NodeInfo]:
    """The usable nodes of these names in ``cluster`` (a name it does not know: none)."""
    found = (inventory.node(name, cluster) for name in names)
    return [n for n in found if n is not None and n.cluster == cluster and n.usable]


def _own_healthy(inventory: Inventory, info: WorkloadInfo, lost: AbstractSet[GpuKey]) -> dict[Node, int]:
    """Per node, the job's GPUs it could start on again that are not already counted free: on a node that
    takes new work, not lost (where its indices are unknown, those it may be on that were lost count against
    it)."""
    count: Counter[Node] = Counter()
    for i, unit in enumerate(info.units):
        usable = []
        for key in unit:
            node = inventory.node(key[1], key[0])
            if node is not None and node.usable:
                usable.append((key, node))
        if info.size(i) < len(unit):
            left = max(0, min(info.size(i), len(usable)) - sum(1 for key, _ in usable if key in lost))
            for key, _ in usable:  # given to its nodes in turn (such a unit is on one node)
                if left > 0 and key not in lost:
                    count[key[0], key[1]] += 1
                    left -= 1
            continue
        for key, node in usable:
            if key not in lost and key[2] not in node.idle:
                count[key[0], key[1]] += 1
    return count


def _needed_nodes(info: WorkloadInfo) -> int:
    """How many nodes a job asking GPUs per node starts again on: the fewest it asked (``--nodes=1-2``: 1),
    at most those it held."""
    held = len({(key[0], key[1]) for key in info.gpus})
    return min(held, info.min_nodes) if info.min_nodes else held


def _needed_gpus(info: WorkloadInfo) -> int:
    """How many GPUs a job starts again on: those it held, or, asking them per node, as many on each of the
    fewest nodes it asked."""
    if info.per_node and info.min_nodes:
        return min(info.held, info.per_node * _needed_nodes(info))
    return info.held


def _whole_nodes_fit(
    inventory: Inventory,
    info: WorkloadInfo,
    place: tuple[Reach, frozenset[str]],
    own: Mapping[Node, int],
    lost: AbstractSet[GpuKey],
) -> bool:
    """Whether a job asking ``info.per_node`` GPUs on each of its nodes finds as many nodes as it holds,
    usable and in its reach, each with that many for it: the node's free GPUs less the idle ones an open
    incident took, plus its own healthy GPUs there (``own``)."""
    reach, clusters = place
    needed = _needed_nodes(info)
    found = 0
    for cluster in clusters:
        for node in inventory.nodes_in(cluster):
            mine = own.get((node.cluster, node.name), 0)
            if not node.usable or (node.free or 0) + mine < info.per_node or not reach.allows(node):
                continue
            if (node.free or 0) - _idle_lost(node, lost) + mine >= info.per_node:
                found += 1
                if found >= needed:
                    return True
    return found >= needed

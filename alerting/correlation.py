"""Correlation: which open incident explains a new alert (``join_rank``, ``best_candidate``), and how one
signal spreads from node to rack to cluster (``same_signal_spread``).

What an incident's members say of its fault is in ``alerting.root_facts``; the root cause of a set of
alerts in ``alerting.root_cause``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import datetime

from alerting.faults import ENVIRONMENT, OUTAGE_KINDS, SYMPTOM_KINDS
from alerting.inventory import GpuKey, Inventory
from alerting.member import Member, Signal, first_onset
from alerting.root_facts import RootFacts, down_nodes, explains, root_facts, whole_node
from alerting.topology import RACK_DEPTH, UNKNOWN, Path, common_ancestor, contains
from gpuwarden.labelnumbers import label_number
from gpuwarden.model import WorkloadRef, shares_workload

WORKLOAD_OUTAGE_SPREAD_SECONDS = 300.0
"""Outages of one workload's GPUs this close in onset are one incident (``join_rank``)."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """An open incident as correlation sees it."""

    id: str
    root_path: Path
    workloads: frozenset[WorkloadRef]
    members: Collection[Member]
    last_alert_at: datetime
    placed: frozenset[GpuKey] | None = None  # GPUs its workloads run on (None: look them up)
    facts_of: Callable[[], RootFacts] | None = None  # the incident's cached ``RootFacts``, if it keeps them

    def placement(self, inventory: Inventory | None) -> frozenset[GpuKey]:
        """The GPUs its workloads run on: as the incident keeps them, else from the inventory."""
        return placement(self.workloads, inventory) if self.placed is None else self.placed

    def facts(self) -> RootFacts:
        """What ``explains`` needs of the members."""
        return self.facts_of() if self.facts_of is not None else root_facts(self.members)

    def order(self) -> tuple[datetime, str]:
        """Where it comes among incidents that explain an alert equally well (see ``first_onset``)."""
        return first_onset(self.members, self.id)


def gpu_keys(path: Path, inventory: Inventory | None) -> set[GpuKey]:
    """GPUs under a path that has at least node depth (all GPUs of a node when the inventory knows it)."""
    if len(path) >= 4:
        gpu = path[3]
        index = label_number(gpu)
        if index is not None:
            return {(path[0], path[2], index)}
        placed = inventory.gpu_by_uuid(gpu) if inventory is not None else None
        return {placed} if placed is not None else set()
    if len(path) == 3 and inventory is not None:
        info = inventory.node(path[2], path[0])
        return {(info.cluster, info.name, i) for i in range(info.gpu_count)} if info is not None else set()
    return set()


def placement(workloads: Iterable[WorkloadRef], inventory: Inventory | None) -> frozenset[GpuKey]:
    """Every GPU these workloads run on, as far as the inventory knows."""
    if inventory is None:
        return frozenset()
    return frozenset().union(*(inventory.placement(w) for w in workloads))


def gpus_under(path: Path, inventory: Inventory) -> frozenset[GpuKey]:
    """The GPUs of a cluster or rack path, or of the node of a node or GPU path."""
    if len(path) <= RACK_DEPTH:
        return frozenset(
            (n.cluster, n.name, i)
            for n in inventory.nodes_in(path[0], path[1] if len(path) == RACK_DEPTH else None)
            for i in range(n.gpu_count)
        )
    return frozenset(gpu_keys(path[:3], inventory) | gpu_keys(path, inventory))


def _hosts_workload(
    path: Path, placed: frozenset[GpuKey], inventory: Inventory | None, under: dict[Path, frozenset[GpuKey]]
) -> bool:
    if inventory is None or not path or not placed:
        return False
    gpus = under.get(path)
    if gpus is None:
        gpus = under[path] = gpus_under(path, inventory)
    return not placed.isdisjoint(gpus)


def spread_root(root: Path) -> bool:
    """A root that a spread of one signal may have: a rack, or a node (``same_signal_spread``)."""
    return RACK_DEPTH <= len(root) <= RACK_DEPTH + 1


def rolls_up(root: Path) -> bool:
    """Whether an incident rooted at ``root`` may take its signal's alerts from another rack of its cluster
    (``same_signal_spread``'s roll-up to the cluster): a rack, or a node where racks are unknown. Any other
    takes them only from its own known rack."""
    return len(root) == RACK_DEPTH or (len(root) == RACK_DEPTH + 1 and root[1] == UNKNOWN)


def same_signal_spread(candidate: Candidate, new: Member, path: Path) -> int | None:
    """How the same alert already held by ``candidate`` spreads to ``path``: None when it does not.

    4: the candidate holds it on at least two GPUs and they share ``path``'s rack (roll up to the rack).
    5: the candidate holds it on GPUs of at least two nodes and ``path`` is another rack of the same cluster
    (a bad driver or firmware rolled out rack by rack; roll up to the cluster); where racks are unknown, on
    at least two GPUs of a node and ``path`` is another node. Outages are left out of the cluster roll-up:
    two dead nodes in two racks are two faults; so is an incident holding any outage (a GPU lost as much as
    a node down), whose XIDs and stale exporters are its evidence. One earlier single-GPU fault is not a
    pattern: two unrelated faults on different nodes stay apart.
    """
    root = candidate.root_path
    if not spread_root(root) or root[0] != path[0]:
        return None  # cheap test first: ingest calls this for every open incident
    rack_unknown = root[1] == UNKNOWN
    same_rack = not rack_unknown and root[:RACK_DEPTH] == path[:RACK_DEPTH]
    if not same_rack and (new.kind in OUTAGE_KINDS or not rolls_up(root)):
        return None  # the index of open incidents files by these tests (``incident_index``)
    if not same_rack and not rack_unknown and new.kind in ENVIRONMENT:
        return None  # a rack's heat or power does not reach the next rack: no roll-up to the cluster
    same = [m for m in candidate.members if m.is_infra and m.signal == new.signal]
    if len(same) < 2 or (rack_unknown and not same_rack and not _only_patterns(candidate.members)):
        return None
    if same_rack and not _outage_evidence(candidate, new):
        return 4 if len(common_ancestor([*(m.location.path for m in same), path])) >= RACK_DEPTH else None
    if same_rack:
        return None
    if any(m.kind in OUTAGE_KINDS for m in candidate.members):
        # An outage (a node or rack down, a GPU lost or hung) holds these as its evidence: they are not a
        # signal spreading, and a side signal such as a stale exporter elsewhere is another fault.
        return None
    nodes = {m.location.path[: RACK_DEPTH + 1] for m in same if len(m.location.path) > RACK_DEPTH}
    return 5 if len(nodes) >= 2 or rack_unknown else None


def _outage_evidence(candidate: Candidate, new: Member) -> bool:
    """Whether the candidate holds ``new``'s signal only as an outage's evidence (XID 119s on the GPUs of a
    node that is down): not a signal spreading in the rack, so another node's alert of it is not the
    outage's (a driver rollout reaching the rack after a node died there)."""
    if new.kind in OUTAGE_KINDS:
        return False
    facts = candidate.facts()
    return facts.outage_kind and new.signal not in facts.signals


def _only_patterns(members: Iterable[Member]) -> bool:
    """Whether every signal among these infrastructure alerts is on two GPUs or more: a node whose GPUs
    show a pattern, not a double-bit ECC error beside a GPU running hot (a node's unrelated faults, which
    rolled up to the cluster would take every later alert of either name on any node)."""
    places: dict[Signal, set[Path]] = {}
    for m in members:
        if m.is_infra:
            places.setdefault(m.signal, set()).add(m.location.path)
    return all(len(paths) >= 2 for paths in places.values())


def foreign(root: Path, workloads: frozenset[WorkloadRef], new: Member) -> bool:
    """True when an incident rooted in another cluster than ``new`` cannot explain it.

    Across clusters only a symptom of a workload the incident already holds can join.
    """
    path = new.location.path
    if not (path and root and path[0] != root[0]):
        return False
    return new.kind not in SYMPTOM_KINDS or not shares(new.location.workloads, workloads)


@functools.lru_cache(maxsize=4096)
def shares(a: frozenset[WorkloadRef], b: frozenset[WorkloadRef]) -> bool:
    """``shares_workload`` of two sets of workloads, remembered (it depends on nothing else): each stalled
    rank asks it of every open incident of another cluster, a storm's stalls the same pairs over and over."""
    return shares_workload(a, b)


def join_rank(
    candidate: Candidate,
    new: Member,
    inventory: Inventory | None,
    under: dict[Path, frozenset[GpuKey]] | None = None,
) -> int | None:
    """How well ``candidate`` explains ``new``: lower is better, None when it does not.

    ``under`` keeps the GPUs under ``new``'s path between calls for the same alert (``best_candidate``).
    """
    under = {} if under is None else under
    path = new.location.path
    root = candidate.root_path
    if path and root and path[0] != root[0]:
        # Another cluster: only a symptom of a workload the incident already holds can join (ingest asks
        # every open incident for each new alert, so this exit comes first).
        return None if foreign(root, candidate.workloads, new) else 1
    if not path and not new.location.workloads:
        # An alert without topology or workload labels only groups with its own kind of alert.
        same = all(
            not m.location.path and m.labels.get("alertname") == new.labels.get("alertname")
            for m in candidate.members
        )
        return 1 if same else None
    if path and root and contains(root, path) and new.is_infra and explains(root, candidate.facts, new):
        return 0
    runs_on = new.location.runs_on
    if (
        runs_on
        and root
        and new.kind in SYMPTOM_KINDS
        and any(holds_gpu(root, candidate, gpu) for gpu in runs_on)
    ):
        return 1  # a rank whose GPU the incident's fault holds (its members may not name the job yet)
    if new.kind in SYMPTOM_KINDS and shares(new.location.workloads, candidate.workloads):
        # The job's rank elsewhere than the incident's fault: a collective stalls everywhere, so it may
        # still be this fault's; only where no incident holds the rank's GPU (see the rule above).
        return 6 if runs_on and root else 1
    if path and root and contains(root, path) and not new.is_infra and not runs_on:
        return 1  # a placed rank goes by its GPU (above), not by its cluster label
    if new.is_infra and not root:
        return 2 if _hosts_workload(path, candidate.placement(inventory), inventory, under) else None
    if (
        new.is_infra
        and path
        and root
        and len(common_ancestor([root, path])) > RACK_DEPTH
        and explains(path[: RACK_DEPTH + 1], candidate.facts, new)
    ):
        # Related faults on several GPUs of one node within the window: the node is the lowest common
        # component. Unrelated ones (one GPU hot, another leaking memory) stay apart.
        return 3
    if new.is_infra and path and root:
        # The same signal on GPUs of several nodes (at least two already): roll up to the rack or cluster.
        spread = same_signal_spread(candidate, new, path)
        if spread is not None:
            return spread
    if new.is_outage and path and root:
        # Whole nodes down in one rack: one incident, the rack's (a power loss only when every node is:
        # see ``root_cause``). A single GPU lost on each of two nodes is two faults.
        if (
            whole_node(path)
            and len(common_ancestor([root, path])) >= RACK_DEPTH
            and down_nodes(candidate.members)
        ):
            return 3
        # Outages that take replicas or ranks of one workload within minutes of each other: one incident,
        # whose impact adds them up (four nodes of unknown racks down, each with a replica of a service:
        # the service is down, not four services a quarter down).
        together = any(
            m.is_outage
            and m.firing
            and abs((m.onset - new.onset).total_seconds()) <= WORKLOAD_OUTAGE_SPREAD_SECONDS
            for m in candidate.members
        )
        if (
            together
            and candidate.workloads
            and path[1:2] == (UNKNOWN,)  # known racks: the rules above
            and _hosts_workload(path, candidate.placement(inventory), inventory, under)
        ):
            return 3
    return None


def holds_gpu(root: Path, candidate: Candidate, gpu: Path) -> bool:
    """Whether the fault of an incident rooted at ``root`` holds ``gpu``: a rack or node root holds what is
    under it; a cluster root (a signal spread over racks, faults of nodes of unknown racks) only the nodes
    its alerts are on, not every GPU of the cluster (a job stalled elsewhere is not a rollout's)."""
    if not contains(root, gpu):
        return False
    return len(root) >= RACK_DEPTH or gpu[: RACK_DEPTH + 1] in candidate.facts().node_kinds


def spreads(candidate: Candidate, new: Member) -> bool:
    """Whether ``candidate`` is ``new``'s signal spreading and nothing else (a driver rollout's XID 119):
    the alert is more of it, whatever other fault its GPU shares (a node down, an NVSwitch failing)."""
    return new.kind not in OUTAGE_KINDS and candidate.facts().spread_of == new.signal


def best_candidate(
    candidates: Iterable[Candidate], new: Member, inventory: Inventory | None
) -> Candidate | None:
    """The incident that best explains a new alert, or None to open a new one: the signal's own spread
    (``spreads``), then the best rank, then the most specific root, then the most recently active; among
    those still equal, the earliest onset."""
    ranked: list[tuple[tuple[int, int, float], Candidate]] = []
    under: dict[Path, frozenset[GpuKey]] = {}
    for c in candidates:
        rank = join_rank(c, new, inventory, under)
        if rank is not None and spreads(c, new):
            rank = -1  # more of a signal spreading goes with it, not with another fault where it is
        if rank is not None:
            ranked.append(((rank, -len(c.root_path), -c.last_alert_at.timestamp()), c))
    if not ranked:
        return None
    best = min(key for key, _ in ranked)
    tied = [c for key, c in ranked if key == best]
    return tied[0] if len(tied) == 1 else min(tied, key=Candidate.order)

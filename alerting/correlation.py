"""Correlation: which incident explains a new alert, and the root cause of a set of alerts.

The root cause is the lowest common component whose fault explains the rest: outage alerts (node down,
GPU lost, ...) on sibling components escalate to their common parent (two nodes of one rack: the rack),
workload symptoms (job stalled, SLO burn) defer to any infrastructure fault, and among candidates the
earliest onset wins.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime

from alerting.faults import OUTAGE_KINDS, SYMPTOM_KINDS, alert_xid, takes_capacity
from alerting.inventory import GpuKey, Inventory
from alerting.topology import UNKNOWN, Location, Path, common_ancestor, contains, path_target
from gpuwarden.labelnumbers import label_number
from gpuwarden.model import ClusterRef, FaultKind, RootCause, WorkloadRef, shares_workload

RACK_DEPTH = 2
_NEVER = datetime.max.replace(tzinfo=UTC)
WORKLOAD_OUTAGE_SPREAD_SECONDS = 300.0
"""Outages of one workload's GPUs this close in onset are one incident (``join_rank``)."""

Signal = tuple[str, FaultKind, int | None]
"""An alert's name, fault kind and XID code: alerts alike in all three are one signal, which may spread."""


@dataclass(slots=True)
class Member:
    """What correlation needs to know about one alert of an incident."""

    fingerprint: str
    kind: FaultKind
    location: Location
    onset: datetime
    firing: bool
    labels: Mapping[str, str]
    flapping: bool = False
    recommended_action: str = "none"  # what the evidence suggests (the XID catalog, the anomaly service)
    annotations: Mapping[str, str] = field(default_factory=dict)
    is_outage: bool = field(init=False)
    """The fault takes capacity away: an outage kind, or an XID after which the GPU needs a reset (kind and
    labels never change for a member: worked out once, correlation asks for every pair it compares)."""
    signal: Signal = field(init=False)
    """What makes two alerts one signal spreading (a driver rollout): the name, the kind and the XID code.
    XID 119 on sixteen nodes and an XID 48 on another are two faults, though both alerts are ``GPUXid``."""
    is_infra: bool = field(init=False)
    """An infrastructure fault with a place in the topology (not a workload symptom)."""
    # What impact last read of the annotations (``impact.read_measures``): which, the error ratio, the burn.
    measured_of: Mapping[str, str] | None = field(default=None, init=False, compare=False)
    error_ratio: float = field(default=0.0, init=False, compare=False)
    burn_rate: float = field(default=0.0, init=False, compare=False)

    def __post_init__(self) -> None:
        code = alert_xid(self.kind, self.labels)
        self.is_outage = takes_capacity(self.kind, code)
        self.signal = (self.labels.get("alertname", ""), self.kind, code)
        self.is_infra = bool(self.location.path) and self.kind not in SYMPTOM_KINDS


onset_key = operator.attrgetter("onset", "fingerprint")
"""A member's place in onset order, its fingerprint breaking a tie (a C key: recomputes sort them all)."""


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


def first_onset(members: Iterable[Member], incident_id: str) -> tuple[datetime, str]:
    """An incident's earliest alert onset, then that alert's fingerprint: the tie-break between incidents.

    Not the incident id (a random draw) nor when it was opened (alerts of one POST share that instant):
    the same alerts break the tie the same way in every run and whatever order they arrived in."""
    first = min(members, key=onset_key, default=None)
    return (_NEVER, incident_id) if first is None else (first.onset, first.fingerprint)


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
    if len(root) < RACK_DEPTH or root[0] != path[0] or len(root) > RACK_DEPTH + 1:
        return None  # cheap test first: ingest calls this for every open incident
    rack_unknown = root[1] == UNKNOWN
    same_rack = not rack_unknown and root[:RACK_DEPTH] == path[:RACK_DEPTH]
    if not same_rack and (new.kind in OUTAGE_KINDS or (len(root) > RACK_DEPTH and not rack_unknown)):
        return None
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
        and any(_holds(root, candidate, gpu) for gpu in runs_on)
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
            _whole_node(path)
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


def _holds(root: Path, candidate: Candidate, gpu: Path) -> bool:
    """Whether the fault of an incident rooted at ``root`` holds ``gpu``: a rack or node root holds what is
    under it; a cluster root (a signal spread over racks, faults of nodes of unknown racks) only the nodes
    its alerts are on, not every GPU of the cluster (a job stalled elsewhere is not a rollout's)."""
    if not contains(root, gpu):
        return False
    return len(root) >= RACK_DEPTH or gpu[: RACK_DEPTH + 1] in candidate.facts().node_kinds


_FAMILIES = (
    frozenset({FaultKind.THERMAL, FaultKind.POWER_BRAKE}),
    frozenset(
        {FaultKind.ECC_DBE, FaultKind.ECC_SBE_STORM, FaultKind.ROW_REMAP_PENDING, FaultKind.ROW_REMAP_FAILURE}
    ),
)
_ANY_CAUSE = frozenset({FaultKind.XID, FaultKind.EXPORTER_STALE, FaultKind.UNKNOWN})


def _related_on_node(node: Path, facts: RootFacts, new: Member) -> bool:
    """Whether ``new``, on ``node``, may be the same fault as the members on that node: the same kind or
    family; an outage of what it is on (the node down, or its own GPU lost: a failing component shows many
    symptoms), or an outage of the node or of a GPU that already alerts, or one beside other outages; or a
    signal that says little of its cause (an XID, a stale exporter, an anomaly). A GPU lost does not explain
    another GPU of its node running hot."""
    kinds = facts.node_kinds.get(node, frozenset())
    if not kinds:
        return False
    gpu = new.location.path[: RACK_DEPTH + 2]
    if (
        _taken(facts.taken, node)
        or gpu in facts.gpus_out
        or new.kind in kinds
        or new.kind in _ANY_CAUSE
        or not kinds.isdisjoint(_ANY_CAUSE)
    ):
        return True
    if new.is_outage and (_whole_node(gpu) or node in facts.node_outage or gpu in facts.gpus):
        return True
    return any(new.kind in family and not kinds.isdisjoint(family) for family in _FAMILIES)


@dataclass(frozen=True, slots=True)
class RootFacts:
    """What ``explains`` needs of an incident's members, gathered once (a storm asks for each alert)."""

    node_kinds: Mapping[Path, AbstractSet[FaultKind]]  # kinds of the members on each node
    node_outage: AbstractSet[Path]  # nodes with an outage member (on the node or one of its GPUs)
    taken: AbstractSet[Path]  # what outages took whole: node, rack or cluster paths
    gpus: AbstractSet[Path]  # GPU paths of the members
    gpus_out: AbstractSet[Path]  # GPU paths of the outage members (GPUs lost, not whole nodes)
    signals: frozenset[Signal]  # signals of no outage kind on two nodes or more, one not taken by an outage
    outage_kind: (
        bool  # a member of an outage kind (node or rack down, GPU lost or hung), not only XIDs or ECC
    )
    spread_of: Signal | None = None
    """The one XID signal of every infrastructure alert, spread to two nodes or more, with no outage kind
    among them: the incident is that XID spreading (a driver rollout's XID 119), nothing else. Stale
    exporters or heat spreading are left to the rack rules (a rack's outage takes its stale exporters)."""


@dataclass(slots=True)
class FactsBuilder:
    """``RootFacts`` gathered member by member: an incident's members only ever grow, so a storm's ten
    thousandth alert adds itself instead of walking the other 9,999 again (which made a cluster-wide XID
    quadratic: 9 s per thousand alerts at ten thousand)."""

    node_kinds: dict[Path, set[FaultKind]] = field(default_factory=dict)
    node_outage: set[Path] = field(default_factory=set)
    taken: set[Path] = field(default_factory=set)
    gpus: set[Path] = field(default_factory=set)
    gpus_out: set[Path] = field(default_factory=set)
    signal_nodes: dict[Signal, set[Path]] = field(default_factory=dict)  # where each non-outage signal is
    # The signals of ``signal_nodes`` on two nodes or more, one no outage took (``facts``), kept as members
    # come, and the facts last made, made again only when what they hold changes (these signals, a new one
    # in ``signal_nodes``, ``outage_kind``): gathering the signals and making the facts again for every
    # alert joining a rack storm was a tenth of the applier's time, and every candidate is now asked for
    # its facts at every alert (``spreads``).
    signals: frozenset[Signal] = frozenset()
    outage_kind: bool = False
    made: RootFacts | None = None

    def add(self, m: Member) -> None:
        """Count one more member."""
        path = m.location.path
        node = path[: RACK_DEPTH + 1]
        if m.is_outage and _whole_node(path) and path not in self.taken:
            self.taken.add(path)
            # What it took may hold every node of a signal: only then does that signal go (rare: a node down).
            kept = frozenset(s for s in self.signals if _untaken(self.taken, self.signal_nodes[s]))
            if kept != self.signals:
                self.signals, self.made = kept, None
        if len(node) > RACK_DEPTH:
            kinds = self.node_kinds.get(node)  # not setdefault: it would make a set per member
            if kinds is None:
                kinds = self.node_kinds[node] = set()
            kinds.add(m.kind)
            if m.is_outage:
                self.node_outage.add(node)
        if len(path) > RACK_DEPTH + 1:
            gpu = path[: RACK_DEPTH + 2]
            self.gpus.add(gpu)
            if m.is_outage:
                self.gpus_out.add(gpu)
        if m.kind not in OUTAGE_KINDS:
            nodes = self.signal_nodes.get(m.signal)
            if nodes is None:  # a signal it did not hold: ``spread_of`` may change
                nodes, self.made = set(), None
                self.signal_nodes[m.signal] = nodes
            if node not in nodes:
                nodes.add(node)
                # Not one yet: on one node, or on nodes outages all took (they still do: ``taken`` only
                # grows). It is one now on two nodes or more, this one not taken, or the other one not.
                if (
                    m.signal not in self.signals
                    and len(nodes) >= 2
                    and _untaken(self.taken, nodes if len(nodes) == 2 else (node,))
                ):
                    self.signals, self.made = self.signals | {m.signal}, None
        elif not self.outage_kind:
            self.outage_kind, self.made = True, None

    def facts(self) -> RootFacts:
        """The facts of the members added so far (views of this builder's sets, not copies). A signal is one
        that spread: on two nodes or more, one not taken by an outage (one on a single node is that node's
        fault, though the node's incident rolled up: a rack or cluster takes only what spread)."""
        if self.made is None:
            infra = [s for s in self.signal_nodes if s[1] not in SYMPTOM_KINDS]
            spread_of = None
            if (
                len(infra) == 1
                and infra[0][1] is FaultKind.XID
                and infra[0] in self.signals
                and not self.outage_kind
            ):
                spread_of = infra[0]
            self.made = RootFacts(
                self.node_kinds,
                self.node_outage,
                self.taken,
                self.gpus,
                self.gpus_out,
                self.signals,
                self.outage_kind,
                spread_of,
            )
        return self.made


def root_facts(members: Iterable[Member]) -> RootFacts:
    """The facts of a set of members."""
    builder = FactsBuilder()
    for m in members:
        builder.add(m)
    return builder.facts()


def _taken(taken: AbstractSet[Path], node: Path) -> bool:
    return any(node[:depth] in taken for depth in range(1, len(node) + 1))


def _untaken(taken: AbstractSet[Path], nodes: Iterable[Path]) -> bool:
    """Whether one of ``nodes`` is not taken by an outage."""
    return any(not _taken(taken, node) for node in nodes)


def explains(root: Path, facts_of: Callable[[], RootFacts], new: Member) -> bool:
    """Whether an incident rooted at ``root`` (which holds ``new``'s place) may explain ``new``.

    At a node or GPU: a related fault on that node (see ``_related_on_node``). At a rack: a whole node's
    outage or a stale exporter (power and top-of-rack switching are the rack's), a GPU's outage where the
    incident holds an outage of its own (a GPU lost beside dead nodes), or what a cluster takes. A rack
    root that only one signal spreading reached (a driver's XID 119 on its nodes) explains no other GPU
    fault: an XID 48 there is its own. At a cluster, a root only a spread of one signal or a workload's
    outages reach: the same signal, name, kind and XID code (not a dead node or GPU: two in two racks are
    two faults, see ``same_signal_spread``), as one that is no outage's consequence, or anything on a node
    an outage took."""
    path = new.location.path
    if len(root) == RACK_DEPTH and new.kind is FaultKind.EXPORTER_STALE:
        return True  # before gathering any facts: a rack storm asks this for each alert
    if len(root) == RACK_DEPTH and new.is_outage and len(path) <= RACK_DEPTH + 1:
        # A node down is the rack's, but not a driver rollout's: an XID spreading is no cause of it.
        return facts_of().spread_of is None
    facts = facts_of()
    where = path[: RACK_DEPTH + 1]
    if len(root) > RACK_DEPTH:
        return _related_on_node(root[: RACK_DEPTH + 1], facts, new)
    if len(root) == RACK_DEPTH and new.is_outage and facts.outage_kind:
        return True
    if len(where) > RACK_DEPTH and _taken(facts.taken, where):
        return True
    return new.kind not in OUTAGE_KINDS and new.signal in facts.signals


def spreads(candidate: Candidate, new: Member) -> bool:
    """Whether ``candidate`` is ``new``'s signal spreading and nothing else (a driver rollout's XID 119):
    the alert is more of it, whatever other fault its GPU shares (a node down, an NVSwitch failing)."""
    return new.kind not in OUTAGE_KINDS and candidate.facts().spread_of == new.signal


def takes_in(root: Path, facts_of: Callable[[], RootFacts], members: Iterable[Member]) -> bool:
    """Whether an incident rooted at ``root`` takes in another incident under it whose alerts are
    ``members`` (the merge pass). An outage's root (a rack down, a node down) takes it when it explains one
    of them, the rest coming as that one's evidence. A rack or cluster that only a spreading signal reached
    takes it only when it explains every infrastructure alert of it: an incident holding the signal beside
    a fault of its own (a node down) keeps it, as the join path would have (its root is the more specific)."""
    infra = [m for m in members if m.is_infra]
    if len(root) > RACK_DEPTH or facts_of().outage_kind:
        return any(explains(root, facts_of, m) for m in members)
    return bool(infra) and all(explains(root, facts_of, m) for m in infra)


def down_nodes(members: Iterable[Member]) -> bool:
    """Whether a firing outage of these took a whole node (or more)."""
    return any(m.is_outage and m.firing and _whole_node(m.location.path) for m in members)


def _whole_node(path: Path) -> bool:
    """A path of a node, rack or cluster: an outage there takes a whole node or more."""
    return 0 < len(path) <= RACK_DEPTH + 1


def _node_down(path: Path, outages: Sequence[Member], inventory: Inventory | None) -> bool:
    """Whether GPU outages on one node took all of it: every GPU the inventory knows it has (two of eight
    lost are two lost GPUs, not a dead host). Never where no inventory knows the node: how many GPUs it has
    is unknown, so two GPUs with a double-bit ECC error are two GPU faults, not the node down."""
    lost = {m.location.path for m in outages if len(m.location.path) > RACK_DEPTH + 1}
    node = inventory.node(path[2], path[0]) if inventory is not None else None
    return node is not None and len(lost) >= max(node.gpu_count, 2)


def _rack_down(path: Path, outages: Sequence[Member], inventory: Inventory | None) -> bool:
    """Whether the outages say the whole rack is down: every node of it the inventory knows (two of
    eight down are two nodes), or, without one, two whole nodes."""
    down = {m.location.path for m in outages if _whole_node(m.location.path)}
    size = len(inventory.nodes_in(path[0], path[1])) if inventory is not None else 0
    return len(down) >= max(size, 2)


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


ENVIRONMENT = frozenset({FaultKind.THERMAL, FaultKind.POWER_BRAKE})
"""Faults that can take a node or GPU down where they spread: heat, power. An XID before a node went down
is not the node's cause (the node is)."""


def _within_earlier_fault(infra: Sequence[Member], outages: Sequence[Member]) -> bool:
    """Whether the outages lie where faults that began before them had already spread: a node that shut
    down in a rack whose GPUs were running hot is the heat's, not a fault of its own (earliest onset first).
    ``infra`` and ``outages`` are in onset order."""
    earlier = [m for m in infra if m.kind in ENVIRONMENT and not m.is_outage and m.onset < outages[0].onset]
    if not earlier:
        return False
    spread = common_ancestor(m.location.path for m in earlier) or earlier[0].location.path
    return all(contains(spread, m.location.path) for m in outages)


def root_cause(members: Iterable[Member], inventory: Inventory | None) -> tuple[Path, RootCause]:
    """The root cause of a set of alerts and its topology path (empty for a workload root)."""
    items = sorted(members, key=onset_key)
    infra = [m for m in items if m.is_infra]
    symptoms = [m for m in items if m.kind in SYMPTOM_KINDS and m.location.workloads]
    if symptoms:
        # A fault explains a workload's symptom if it takes capacity away or began before it: a GPU that
        # ran hot four minutes after a job deadlocked is evidence, not the cause.
        infra = [m for m in infra if m.is_outage or m.onset <= symptoms[0].onset]
    if infra:
        outages = [m for m in infra if m.is_outage]
        basis = outages if outages and not _within_earlier_fault(infra, outages) else infra
        path = common_ancestor(m.location.path for m in basis)
        if not path:
            path = basis[0].location.path
        at_root = [m for m in basis if m.location.path == path]
        if at_root:
            kind = next((m.kind for m in at_root if m.is_outage), at_root[0].kind)
        elif all(m.kind is FaultKind.XID for m in basis):
            # The same kind of XID on many GPUs (a driver or firmware fault): neither the node nor the
            # rack is down, whatever the XID took out of service.
            kind = FaultKind.XID
        elif len(path) == RACK_DEPTH and _rack_down(path, outages, inventory):
            kind = FaultKind.RACK_DOWN
        elif len(path) == RACK_DEPTH + 1 and outages:
            # Every GPU of one node lost at once: the node is the common fault; some of them, not a node down.
            kind = FaultKind.NODE_DOWN if _node_down(path, outages, inventory) else outages[0].kind
        elif basis is outages and any(_whole_node(m.location.path) for m in outages):
            # Whole nodes down with a GPU lost elsewhere: the nodes are the larger fault, whichever came first
            # (a GPU incident absorbed into a rack's must not turn its root into "gpu_lost").
            kind = FaultKind.NODE_DOWN
        else:
            kind = basis[0].kind
        return path, RootCause(kind, path_target(path, inventory))
    if not items:
        raise ValueError("an incident needs at least one alert")
    first = items[0]
    workloads = sorted(first.location.workloads, key=str)
    if workloads:
        return (), RootCause(first.kind, workloads[0])
    path = first.location.path
    if path:
        return path, RootCause(first.kind, path_target(path, inventory))
    return (), RootCause(first.kind, ClusterRef(first.labels.get("cluster", "")))

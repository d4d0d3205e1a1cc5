"""Root facts: what an incident's members say about where its fault is (the kinds on each node, what outages
took, which signals spread), gathered member by member, and the rules that read them: whether an incident's
root explains a new alert (``explains``) or takes in another incident (``takes_in``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime

from alerting.faults import OUTAGE_KINDS, SYMPTOM_KINDS
from alerting.member import Member, Signal
from alerting.topology import RACK_DEPTH, Path, contains
from gpuwarden.model import FaultKind
from gpuwarden.xid import node_wide

_FAMILIES = (
    frozenset({FaultKind.THERMAL, FaultKind.POWER_BRAKE}),
    frozenset(
        {FaultKind.ECC_DBE, FaultKind.ECC_SBE_STORM, FaultKind.ROW_REMAP_PENDING, FaultKind.ROW_REMAP_FAILURE}
    ),
)

_ANY_CAUSE = frozenset({FaultKind.XID, FaultKind.EXPORTER_STALE, FaultKind.UNKNOWN})
"""What, new, may be a sign of any fault where it is: an XID, a stale exporter, an anomaly. One of the node
(naming no GPU, or a host's XID) may be any fault's there; one of a GPU only that GPU's, or an outage's on its
node, or more of a signal the node already shows (``_gpu_sign_related``)."""
_SIGNS = frozenset({FaultKind.XID, FaultKind.UNKNOWN})
"""What, held by an incident, explains what lies where it is (``RootFacts.signs``): an anomaly (of unknown
cause) or an XID is the sign of a fault on its GPU, or on its node when it names no GPU or the XID is the
host's (``gpuwarden.xid.node_wide``: 79, 151, 167). A stale exporter explains nothing else: it hides the
node's data, and a fault another source reports there is not caused by it."""


def _related_on_node(node: Path, facts: RootFacts, new: Member) -> bool:
    """Whether ``new``, on ``node``, may be the same fault as the members on that node: the same kind or
    family; an outage of what it is on (the node down, or its own GPU lost: a failing component shows many
    symptoms), or an outage of the node or of a GPU that already alerts, or one beside other outages; or a
    signal that says little of its cause (an XID, a stale exporter, an anomaly), or what lies where the
    incident holds an anomaly or an XID (``_SIGNS``: its GPU, as an anomaly before a hard fault there is
    its first sign; a fault on another GPU of the node is not that sign's, and would take its title; the
    node for a host's XID). A GPU lost does not explain another GPU of its node running hot."""
    kinds = facts.node_kinds.get(node, frozenset())
    if not kinds:
        return False
    path = new.location.path
    gpu = path[: RACK_DEPTH + 2]
    if new.kind in _ANY_CAUSE:
        return not _of_one_gpu(new) or _gpu_sign_related(node, facts, new)
    if (
        _taken(facts.taken, node)
        or gpu in facts.gpus_out
        or new.kind in kinds
        or (not kinds.isdisjoint(_SIGNS) and any(contains(at, path) for at in facts.signs))
    ):
        return True
    if new.is_outage and (whole_node(gpu) or node in facts.node_outage or gpu in facts.gpus):
        return True
    return any(new.kind in family and not kinds.isdisjoint(family) for family in _FAMILIES)


def _of_one_gpu(new: Member) -> bool:
    """Whether ``new`` names a GPU and is of that GPU only: not a host's XID (``gpuwarden.xid.node_wide``)."""
    if len(new.location.path) <= RACK_DEPTH + 1:
        return False
    code = new.signal[2]
    return not (new.kind is FaultKind.XID and code is not None and node_wide(code))


def _gpu_sign_related(node: Path, facts: RootFacts, new: Member) -> bool:
    """Whether an XID, stale exporter or anomaly of one GPU (``_of_one_gpu``) on ``node`` may be the fault of
    the members there: on a GPU the incident already holds; beside an outage on the node (the node down, a
    GPU lost: the job it ran died on every GPU, whose XIDs and anomalies follow); more of a signal the node
    already shows (the same XID code on two GPUs, a pattern); or where the incident holds a sign of the node
    (``RootFacts.signs``). An XID 13 on GPU 5 is not GPU 2's thermal slowdown nor its XID 31: it joined as
    any cause on the node, and the node's incident took it in."""
    path = new.location.path
    return (
        path[: RACK_DEPTH + 2] in facts.gpus
        or node in facts.node_outage
        or _taken(facts.taken, node)
        or node in facts.signal_nodes.get(new.signal, ())
        or any(contains(at, path) for at in facts.signs)
    )


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
    signs: AbstractSet[Path] = frozenset()
    """Where its anomalies (alerts of unknown cause) and XIDs explain what lies (``_SIGNS``): their GPUs, or
    a node for one that names no GPU or a host's XID."""
    signal_nodes: Mapping[Signal, AbstractSet[Path]] = field(default_factory=dict)
    """The nodes each of its signals of no outage kind is on."""


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
    signs: set[Path] = field(default_factory=set)
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
        if m.is_outage and whole_node(path) and path not in self.taken:
            self.taken.add(path)
            # What it took may hold every node of a signal: only then does that signal go (rare: a node down).
            kept = frozenset(s for s in self.signals if _untaken(self.taken, self.signal_nodes[s]))
            if kept != self.signals:
                self.signals, self.made = kept, None
        if m.kind in _SIGNS and len(node) > RACK_DEPTH:
            code = m.signal[2]
            host = m.kind is FaultKind.XID and code is not None and node_wide(code)
            self.signs.add(node if host else path[: RACK_DEPTH + 2])
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
                self.signs,
                self.signal_nodes,
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
    incident holds an outage of its own (a GPU lost beside dead nodes), where it holds one of a node what
    that node's root would (an XID beside GPUs lost there, a power brake on a GPU lost), or what a cluster
    takes. A rack root that only one signal spreading reached (a driver's XID 119 on its nodes) explains
    no other GPU fault: an XID 48 there is its own. At a cluster, a root only a spread of one signal or a
    workload's outages reach: the same signal, name, kind and XID code (not a dead node or GPU: two in two
    racks are two faults, see ``same_signal_spread``), as one that is no outage's consequence, or anything
    on a node an outage took."""
    path = new.location.path
    if len(root) == RACK_DEPTH and new.kind is FaultKind.EXPORTER_STALE:
        return True  # before gathering any facts: a rack storm asks this for each alert
    if len(root) == RACK_DEPTH and new.is_outage and len(path) <= RACK_DEPTH + 1:
        # A node down is the rack's, but not a driver rollout's: an XID spreading is no cause of it, whatever
        # else one of its nodes shows (its exporter stale: batch fuzz seed 2848).
        return not _xid_spread_only(facts_of())
    facts = facts_of()
    where = path[: RACK_DEPTH + 1]
    if len(root) > RACK_DEPTH:
        return _related_on_node(root[: RACK_DEPTH + 1], facts, new)
    if len(root) == RACK_DEPTH and new.is_outage and facts.outage_kind:
        return True
    if len(where) > RACK_DEPTH and _taken(facts.taken, where):
        return True
    if (
        len(root) == RACK_DEPTH
        and facts.outage_kind
        and where in facts.node_outage
        and _related_on_node(where, facts, new)
    ):
        # What the node's root would explain on a node where the outage took a GPU (or the node): the
        # rack's partial outage grew out of that node's incident, and an alert posted before it grew joined
        # it there (batch fuzz seeds 277, 1092, 1735, 1741).
        return True
    return new.kind not in OUTAGE_KINDS and new.signal in facts.signals


def _xid_spread_only(facts: RootFacts) -> bool:
    """Whether only XIDs spreading reached the incident's rack: no outage among its members, and every
    signal of it on two nodes or more an XID (``RootFacts.spread_of``, or that beside a fault of one node
    that reached no other, such as its stale exporter)."""
    spread = [s for s in facts.signals if s[1] not in SYMPTOM_KINDS]
    return not facts.outage_kind and bool(spread) and all(s[1] is FaultKind.XID for s in spread)


def recurs(root: Path, members: Iterable[Member], facts_of: Callable[[], RootFacts], new: Member) -> bool:
    """Whether ``new`` is the fault of a resolved incident rooted at ``root`` whose alerts were ``members``,
    coming back (so it reopens the incident rather than opening another): an infrastructure alert under the
    root or on a node the incident had alerts on, of a signal the incident held (the same name, kind and
    XID code) or an outage (a node or rack down, a GPU lost or hung) on a node the incident saw go down
    (a stale exporter counts as one where it saw that node or that GPU go down).
    While that node was down its root explained anything on it; back up, another fault there is new: a bad
    driver's XID 119 on a rack that lost power this morning, a GPU running hot on a node that was down."""
    if not new.is_infra:
        return False  # a workload's symptom says nothing of which fault is back
    facts = facts_of()
    node = new.location.path[: RACK_DEPTH + 1]
    if not (contains(root, new.location.path) or node in facts.node_kinds):
        return False
    if any(m.signal == new.signal for m in members):
        return True
    if new.kind is FaultKind.EXPORTER_STALE:
        # What a dead node's (or GPU's) exporter looks like from Prometheus, and often the first to fire
        # when it dies again: the outage back where the incident saw that node or that GPU dead. Beside a
        # GPU that was lost, on a node that stayed up, it says nothing of that fault.
        return _taken(facts.taken, node) or new.location.path[: RACK_DEPTH + 2] in facts.gpus_out
    return new.kind in OUTAGE_KINDS and (node in facts.node_outage or _taken(facts.taken, node))


def takes_in(root: Path, facts_of: Callable[[], RootFacts], members: Iterable[Member]) -> bool:
    """Whether an incident rooted at ``root`` takes in another incident under it whose alerts are
    ``members`` (the merge pass). An outage's root (a rack down, a node down) takes it when it explains one
    of them, the rest coming as that one's evidence. A rack or cluster that only a spreading signal reached
    takes it only when it explains every infrastructure alert of it: an incident holding the signal beside
    a fault of its own (a node down) keeps it, as the join path would have (its root is the more specific).
    A GPU's outage on a node it holds down since before is that outage's consequence, judged with it: a
    rack's heat that explains a node down takes a GPU of it lost after, as posted one by one the GPU joined
    the heat's incident, which held the node by then (batch fuzz seed 4012)."""
    infra = [m for m in members if m.is_infra]
    if len(root) > RACK_DEPTH or facts_of().outage_kind:
        return any(explains(root, facts_of, m) for m in members)
    down: dict[Path, datetime] = {}
    for m in infra:
        if m.is_outage and m.firing and len(m.location.path) == RACK_DEPTH + 1:
            node = m.location.path
            down[node] = min(m.onset, down.get(node, m.onset))
    return bool(infra) and all(explains(root, facts_of, m) or _after_its_node(m, down) for m in infra)


def _after_its_node(member: Member, down: Mapping[Path, datetime]) -> bool:
    """Whether ``member`` is a GPU's outage on a node of ``down`` (when each went down) since before it."""
    path = member.location.path
    since = down.get(path[: RACK_DEPTH + 1]) if len(path) > RACK_DEPTH + 1 else None
    return since is not None and member.is_outage and member.onset >= since


def grows(root: Path, new: Member) -> bool:
    """Whether ``new`` is an outage that takes ``root`` whole: its GPU's node down, its node's rack."""
    path = new.location.path
    return new.is_outage and whole_node(path) and contains(path, root)


def held_takes(root: Path, facts_of: Callable[[], RootFacts], new: Member) -> bool:
    """Whether an incident rooted at ``root`` that a silence holds takes the infrastructure alert ``new``:
    its own fault, under its root and explained by it (``explains``), or an outage that takes its root
    whole (``grows``: its GPU's node down), not a fault beside it that correlation would join."""
    return grows(root, new) or (contains(root, new.location.path) and explains(root, facts_of, new))


def beside_held(root: Path, facts_of: Callable[[], RootFacts], new: Iterable[Member]) -> bool:
    """Whether alerts that come into an incident rooted at ``root`` which a silence holds bring a fault
    beside the one the silence was set for, so that it ends: the one rule of an alert joining it
    (``joining``), an incident merged into it (``merging``) and alerts regrouped into it (``regrouping``).
    One of them is an infrastructure alert its root does not take (``held_takes``, by what the incident
    holds before they come), unless an outage firing among them takes the root whole (its node down: the
    fault grew, and what lies where that outage is is its). Each alert counts, not the best of them: a
    thermal slowdown merged in beside an XID that the root explains is beside it.

    An incident without a root (a job's stalls) was silenced for whatever fault causes them: the first
    fault that comes in (the earliest) is that fault and roots it, as the first alert joining it does, and
    the rest are judged against it. So alerts joining one by one and their incident merged in whole end the
    silence alike: GPUs 3 and 5 of a node lost beside a silenced job's stalls do (the second is beside the
    first), GPU 3 alone does not."""
    infra = [m for m in new if m.is_infra]
    if not root:
        if len(infra) < 2:
            return False
        first = min(infra, key=lambda m: (m.onset, m.fingerprint))
        root, facts = first.location.path, FactsBuilder()
        facts.add(first)
        facts_of = facts.facts
        infra = [m for m in infra if m is not first]
    grown = [m.location.path for m in infra if m.firing and grows(root, m)]
    if grown:
        wider = min(grown, key=len)
        return any(not contains(wider, m.location.path) for m in infra)
    return any(not held_takes(root, facts_of, m) for m in infra)


def down_nodes(members: Iterable[Member]) -> bool:
    """Whether a firing outage of these took a whole node (or more)."""
    return any(m.is_outage and m.firing and whole_node(m.location.path) for m in members)


def whole_node(path: Path) -> bool:
    """A path of a node, rack or cluster: an outage there takes a whole node or more."""
    return 0 < len(path) <= RACK_DEPTH + 1

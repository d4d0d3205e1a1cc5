"""Root cause: the lowest common component whose fault explains a set of alerts, and its kind.

Outage alerts (node down, GPU lost, ...) on sibling components escalate to their common parent (two nodes of
one rack: the rack), workload symptoms (job stalled, SLO burn) defer to any infrastructure fault, and among
candidates the earliest onset wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from alerting.faults import (
    ENVIRONMENT,
    OUTAGE_KINDS,
    RACK_CAUSED,
    SYMPTOM_KINDS,
    awaits_recovery,
    takes_capacity,
)
from alerting.inventory import Inventory
from alerting.member import Member, Signal, onset_key
from alerting.root_facts import whole_node
from alerting.topology import RACK_DEPTH, Path, common_ancestor, contains, path_target, target_to_dict
from gpuwarden.model import ClusterRef, FaultKind, RootCause


def _within_earlier_fault(infra: Sequence[Member], outages: Sequence[Member]) -> bool:
    """Whether the outages lie where faults that began before them had already spread: a node that shut
    down in a rack whose GPUs were running hot is the heat's, not a fault of its own (earliest onset first);
    so is a node unreachable in a rack whose exporters had gone stale on two nodes or more (its switch: a
    node down is read from its scrape too). One stale exporter is its own node's sign, not a fault that
    spread: a GPU lost beside it is that GPU's. ``infra`` and ``outages`` are in onset order."""
    earlier = [m for m in infra if m.kind in RACK_CAUSED and not m.is_outage and m.onset < outages[0].onset]
    if len({m.location.path[: RACK_DEPTH + 1] for m in earlier if m.kind not in ENVIRONMENT}) < 2:
        earlier = [m for m in earlier if m.kind in ENVIRONMENT]
    if not earlier:
        return False
    if not _one_fault(earlier):
        # Heat on GPUs of several nodes, no one signal of it on two of them: each GPU's own fault (a job's
        # incident took them in), not a rack running hot, so only an outage on one of those GPUs is heat's.
        return all(any(contains(e.location.path, m.location.path) for e in earlier) for m in outages)
    spread = common_ancestor(m.location.path for m in earlier) or earlier[0].location.path
    return all(contains(spread, m.location.path) for m in outages)


def _one_fault(basis: Sequence[Member]) -> bool:
    """Whether alerts whose common place is their root are one fault: on one node, or a node or more down
    (the rack rules), or one signal on two nodes or more (heat or a driver spreading, as correlation rolls
    it up). Faults of several kinds on different nodes, which only a job they all hit joined in one
    incident (a GPU running hot, another hung on the next node), are not a fault of their rack."""
    first: dict[Signal, Path] = {}  # the node each signal was first seen on
    spans = False
    node0 = basis[0].location.path[: RACK_DEPTH + 1] if basis else ()
    for m in basis:  # a storm's thousands of alerts: out at the first node down or signal spread
        path = m.location.path
        if m.is_outage and whole_node(path):
            return True
        node = path[: RACK_DEPTH + 1]
        seen = first.setdefault(m.signal, node)
        if seen != node:
            return True
        spans = spans or node != node0
    return not spans


def _first_fault(basis: Sequence[Member]) -> list[Member]:
    """Of alerts that are not one fault (``_one_fault``), those on the node of the earliest."""
    node = basis[0].location.path[: RACK_DEPTH + 1]
    return [m for m in basis if m.location.path[: RACK_DEPTH + 1] == node]


def gpus_take_node(path: Path, outages: Sequence[Member], inventory: Inventory | None) -> bool:
    """Whether GPU outages on one node took all of it: every GPU the inventory knows it has (two of eight
    lost are two lost GPUs, not a dead host). Never where no inventory knows the node: how many GPUs it has
    is unknown, so two GPUs with a double-bit ECC error are two GPU faults, not the node down."""
    lost = {m.location.path for m in outages if len(m.location.path) > RACK_DEPTH + 1}
    node = inventory.node(path[2], path[0]) if inventory is not None else None
    return node is not None and len(lost) >= max(node.gpu_count, 2)


def _rack_down(path: Path, outages: Sequence[Member], inventory: Inventory | None) -> bool:
    """Whether the outages say the whole rack is down: every node of it the inventory knows (two of
    eight down are two nodes), or, without one, two whole nodes."""
    down = nodes_down(outages, inventory)
    size = len(inventory.nodes_in(path[0], path[1])) if inventory is not None else 0
    return len(down) >= max(size, 2)


def nodes_down(outages: Iterable[Member], inventory: Inventory | None) -> set[Path]:
    """The places these outages take whole: where one is of a node or wider (``whole_node``), and each node
    whose every GPU they lost (``gpus_take_node``: the node down, as its own root would say)."""
    down: set[Path] = set()
    on_node: dict[Path, list[Member]] = {}
    for m in outages:
        path = m.location.path
        if whole_node(path):
            down.add(path)
        elif len(path) > RACK_DEPTH + 1:
            on_node.setdefault(path[: RACK_DEPTH + 1], []).append(m)
    return down | {node for node, lost in on_node.items() if gpus_take_node(node, lost, inventory)}


def _outage_kind(members: Sequence[Member], default: FaultKind) -> FaultKind:
    """The kind of the first outage among ``members`` (in onset order) that is not the driver's request to
    recover (``awaits_recovery``), which follows the fault it recovers from: a DBE's XID 48 and
    ``GpuRecoveryActionPending`` of one tick are "double-bit ECC error", whichever fingerprint sorts first."""
    outages = [m for m in members if m.is_outage]
    causes = [m for m in outages if not awaits_recovery(m.kind, m.labels)] or outages
    return causes[0].kind if causes else default


def _only_signs(basis: Sequence[Member]) -> frozenset[FaultKind]:
    """The kinds in ``basis`` that do not name the root for being placed at it: a stale exporter beside
    another fault hides its node's data and is no fault of its own there (two hot GPUs of a node, then its
    exporter stale, are the node's heat, as they were shown before it came; batch fuzz seeds 1474, 1586).
    Alone, or where it came first (``basis[0]``), it still names it."""
    stale = FaultKind.EXPORTER_STALE
    return frozenset({stale}) if any(m.kind is not stale for m in basis) else frozenset()


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
        if not _one_fault(basis):
            # The root is where the first of them is (its outages' first, if any), not their rack or cluster.
            basis = outages if outages and _one_fault(outages) else _first_fault(outages or basis)
        path = common_ancestor(m.location.path for m in basis)
        if not path:
            path = basis[0].location.path
        signs = _only_signs(basis)
        at_root = [m for m in basis if m.location.path == path and m.kind not in signs]
        if at_root:
            kind = _outage_kind(at_root, at_root[0].kind)
        elif all(m.kind is FaultKind.XID for m in basis):
            # The same kind of XID on many GPUs (a driver or firmware fault): neither the node nor the
            # rack is down, whatever the XID took out of service.
            kind = FaultKind.XID
        elif len(path) == RACK_DEPTH and _rack_down(path, outages, inventory):
            kind = FaultKind.RACK_DOWN
        elif len(path) == RACK_DEPTH + 1 and outages:
            # Every GPU of one node lost at once: the node is the common fault; some of them, not a node down.
            kind = (
                FaultKind.NODE_DOWN
                if gpus_take_node(path, outages, inventory)
                else _outage_kind(outages, outages[0].kind)
            )
        elif basis is outages and any(whole_node(m.location.path) for m in outages):
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
        return (), RootCause(_symptom_kind(first, items), workloads[0])
    path = first.location.path
    if path:
        return path, RootCause(first.kind, path_target(path, inventory))
    return (), RootCause(first.kind, ClusterRef(first.labels.get("cluster", "")))


def _symptom_kind(first: Member, items: Sequence[Member]) -> FaultKind:
    """What a workload's symptoms with no fault under them say of it: stalled where any of its alerts says
    so, else the first's. A deadlocked job raises its ranks' step-time alerts and their stall alerts within
    one evaluation; which began first named the incident a "straggler" (one slow rank) or "stalled" by
    chance, and the storm of ``scenarios.job_wide_stall`` was one or the other with the alerts' order."""
    if first.kind is FaultKind.STRAGGLER and any(
        m.kind is FaultKind.JOB_STALLED and m.location.workloads & first.location.workloads for m in items
    ):
        return FaultKind.JOB_STALLED
    return first.kind


def evidence(members: Iterable[Member], new: Member) -> bool:
    """Whether the fault ``new`` began after a workload's symptom among ``members`` that fires and takes
    nothing: ``root_cause`` does not root the symptom at it (a GPU hot after a job deadlocked), so it moves no
    root (told without reading every member's root again for each such fault)."""
    return not new.is_outage and any(
        m.kind in SYMPTOM_KINDS and m.location.workloads and (m.firing or m.flapping) and m.onset < new.onset
        for m in members
    )


def _takes(path: Path, members: Iterable[Member]) -> int:
    """1 when an outage among ``members`` fires (or flaps) at ``path`` itself, else 0 (``_breadth``'s
    scale): an XID that takes its GPU out of service is of kind ``xid``, no outage kind."""
    return int(any(m.is_outage and (m.firing or m.flapping) and m.location.path == path for m in members))


def _breadth(kind: FaultKind) -> int:
    """How much of a place a fault kind says is out: a rack down, a node down, an outage under it, other
    faults, and below them all the kind not known (any known one says more)."""
    if kind is FaultKind.RACK_DOWN:
        return 3
    if kind is FaultKind.NODE_DOWN:
        return 2
    return 1 if kind in OUTAGE_KINDS else -1 if kind is FaultKind.UNKNOWN else 0


def kept_root(
    shown_kind: str,
    shown_target: Mapping[str, object],
    path: Path,
    root: RootCause,
    inventory: Inventory | None,
    *,
    members: Iterable[Member] = (),
) -> tuple[Path, RootCause] | None:
    """The root cause an open incident showed (``shown_kind`` on ``shown_target``, as stored), and its path,
    when it still stands against ``root`` at ``path``, the root of what fires now; None when ``root`` takes
    over. It stands while what fires lies within it: parts of a rack recovered (a lost GPU of it still
    fires) are the rack's fault recovering, not a narrower incident, as on-call tools keep a title that
    widens but never shrinks. At the same place the wider kind stands (a node that was down, its GPU still
    lost; a fault that takes capacity there, one of ``members`` firing or flapping at ``path``, of whatever
    kind: an XID 48 or 119 on a GPU running hot). A root elsewhere or wider is another fault, and takes
    over; so does any root of a workload (its place is no path to compare)."""
    for depth in range(len(path), 0, -1):
        if target_to_dict(path_target(path[:depth], inventory)) != dict(shown_target):
            continue
        try:
            kind = FaultKind(shown_kind)
        except ValueError:
            return None  # a kind this version does not know: the new root, which it does
        # A kind that took the capacity itself (a double-bit ECC error) is not widened by an outage there:
        # the driver's request to reset the GPU, firing on after the DBE's XID resolved, is that same fault.
        shown = max(_breadth(kind), int(takes_capacity(kind, None)))
        if depth == len(path) and max(_breadth(root.kind), _takes(path, members)) > shown:
            return None  # the same place, a wider fault: a node running hot that went down
        return path[:depth], RootCause(kind, path_target(path[:depth], inventory))
    return None

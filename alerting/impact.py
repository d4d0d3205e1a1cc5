"""Impact of a root cause on the workloads it touches, and the P0-P3 priority computed from it.

``assess`` counts what the fault takes: the GPUs and nodes its live outages took, the workloads on them and
the share of each, the jobs it stopped and whether there is spare capacity to run them again, and what the
alerts measure (``alerting.measures``). The priority that impact implies, by DESIGN.md's table, and its
reason are ``alerting.priority``'s.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from alerting.capacity import PodSet, gpus_lost, has_spare, units_hit
from alerting.correlation import gpu_keys
from alerting.inventory import GpuKey, Inventory, WorkloadInfo, workloads_on
from alerting.measures import read_measures
from alerting.member import Member
from alerting.priority import first_degrading, priority_of, reason_notes, says_down, throttles
from alerting.root_cause import gpus_take_node, nodes_down, root_cause
from alerting.topology import RACK_DEPTH, UNKNOWN, Path, alert_pod, contains, target_label
from gpuwarden.model import (
    FaultKind,
    Impact,
    Priority,
    RootCause,
    Target,
    WorkloadKind,
    WorkloadRef,
    percent,
)


@dataclass(frozen=True, slots=True)
class Assessment:
    """Impact, the priority it implies, and why."""

    impact: Impact
    priority: Priority
    reason: str
    shares: Mapping[str, float] = field(default_factory=dict)
    stopped_jobs: tuple[str, ...] = ()
    lost: frozenset[GpuKey] = frozenset()  # the GPUs this incident's live outages took
    # Whether the root's own outage is still live: a node that came back while a lost GPU of it still fires
    # "was down"; a rack whose nodes are not all down any more "lost power" only in the past.
    root_down_now: bool = True


_ERROR_RATIO, _BURN_RATE = operator.attrgetter("error_ratio"), operator.attrgetter("burn_rate")


def failed_gpus(
    root_path: Path, root: RootCause, members: Sequence[Member], inv: Inventory | None
) -> set[GpuKey]:
    """GPUs that the outage took away (known through the inventory or the alerts' own labels)."""
    gpus: set[GpuKey] = set()
    # The whole rack counts as lost only while it still looks dead: a rack alert, or every node of it down
    # (two of eight down are two nodes: their GPUs count through their alerts below).
    whole_rack = _every_node_down(root_path, members, inv) or any(
        _live(m) and m.location.path == root_path for m in members
    )
    if (
        whole_rack
        and root.kind is FaultKind.RACK_DOWN
        and len(root_path) == 2
        and inv is not None
        and root_path[1] != UNKNOWN
    ):
        for node in inv.nodes_in(root_path[0], root_path[1]):
            gpus |= {(node.cluster, node.name, i) for i in range(node.gpu_count)}
    for m in members:
        if m.is_outage and _live(m):
            gpus |= gpu_keys(m.location.path, inv)
    return gpus


def _every_node_down(root_path: Path, members: Iterable[Member], inv: Inventory | None) -> bool:
    """Whether live outages take every node the inventory lists in the rack at ``root_path`` (False for
    another path, or without an inventory)."""
    if inv is None or len(root_path) != RACK_DEPTH:
        return False
    live = [m for m in members if m.is_outage and _live(m)]
    down = {path for path in nodes_down(live, inv) if len(path) == RACK_DEPTH + 1}  # every GPU lost too
    size = len(inv.nodes_in(root_path[0], root_path[1]))
    return size > 0 and len(down) >= size


def workloads_hit(member: Member, inventory: Inventory | None) -> frozenset[WorkloadRef]:
    """The workloads on the GPUs of an infrastructure alert (all its node's for a node's alert) that
    ``assess`` counts its fault touching, but for one that had stopped before it; empty for another alert."""
    if inventory is None or not member.is_infra:
        return frozenset()
    gpus = gpu_keys(member.location.path, inventory)
    return frozenset(info.ref for info in workloads_on(inventory, gpus) if info.kept < len(info.units))


def pods_on(members: Iterable[Member], inv: Inventory | None) -> dict[GpuKey, PodSet]:
    """GPU -> the namespaces and pods that the alerts on that one GPU name (dcgm-exporter labels a GPU's
    series with the pod it is assigned to; a MIG GPU's, one per instance, with each instance's pod: every
    one of them is on the GPU, not only the last alert's)."""
    out: dict[GpuKey, PodSet] = {}
    for m in members:
        pod = alert_pod(m.labels)
        if pod is None or len(m.location.path) < 4:
            continue
        keys = gpu_keys(m.location.path, inv)
        if len(keys) == 1:
            key = next(iter(keys))
            out[key] = out.get(key, frozenset()) | {pod}
    return out


def _live(m: Member) -> bool:
    """Firing, or flapping: a flapping alert counts as firing until it settles (its impact and priority do
    not swing, and page, with each flap)."""
    return m.firing or m.flapping


def live_root_cause(members: Iterable[Member], inventory: Inventory | None) -> tuple[Path, RootCause]:
    """The root cause of what still fires (``assess``'s rule: of all members once nothing does). A wider
    fault that recovered (a rack's nodes back up) gives the root back to what it left broken (a lost GPU),
    so that the title and the remediation people are asked to approve name that, not the rack."""
    members = list(members)
    return root_cause([m for m in members if _live(m)] or members, inventory)


def _nodes(members: Iterable[Member], gpus: Iterable[GpuKey]) -> set[tuple[str, str]]:
    """The (cluster, node) pairs that lost GPUs or went down."""
    nodes = {(g[0], g[1]) for g in gpus}
    nodes |= {
        (m.location.path[0], m.location.path[2]) for m in members if len(m.location.path) >= 3 and m.is_outage
    }
    return nodes


def _nodes_named(members: Iterable[Member], degraded: Iterable[GpuKey]) -> set[tuple[str, str]]:
    """The (cluster, node) pairs of the degraded GPUs and of the live infrastructure alerts that name a node
    (its ``Hostname``, ``node`` or ``instance``, with or without an inventory): counted affected beside the
    GPUs, which count degraded ones too (5,000 throttling GPUs of 625 hosts were "nodes affected: 0")."""
    nodes = {(g[0], g[1]) for g in degraded}
    nodes |= {
        (m.location.path[0], m.location.path[2]) for m in members if len(m.location.path) >= 3 and m.is_infra
    }
    return nodes


def _touched(
    inventory: Inventory | None,
    failed: set[GpuKey],
    degraded: set[GpuKey],
    named: Mapping[GpuKey, PodSet],
) -> list[tuple[WorkloadInfo, list[int]]]:
    """The workloads on the failed or degraded GPUs, each with the units the failure surely takes. One that
    stopped before this fault (kept a while) concerns it only where the failure surely took its GPUs: a Slurm
    job found stopped after a restart is on its nodes, which of their GPUs not known."""
    out = []
    for info in workloads_on(inventory, failed | degraded) if inventory is not None else []:
        units = units_hit(info, failed, named)
        if units or info.kept < len(info.units):
            out.append((info, units))
    return out


def _unready_too(
    info: WorkloadInfo,
    lost: set[GpuKey],
    named: Mapping[GpuKey, PodSet],
    hit: int,
    counted: dict[WorkloadRef, int],
) -> int:
    """The replicas of a service, beyond the ``hit`` a fault took, that served nothing already (not Ready):
    what was left is what the fault took, so they are lost with it; counted once (the fault may have hit
    some of them too), and noted in ``counted``."""
    more = max(0, len(set(units_hit(info, lost, named)) | set(info.unready)) - hit)
    if more:
        counted[info.ref] = more
    return more


def assess(
    root_path: Path,
    root: RootCause,
    members: Sequence[Member],
    inventory: Inventory | None,
    assume_spare_capacity: bool = True,
    *,
    elsewhere: Callable[[], frozenset[GpuKey]] | None = None,
) -> Assessment:
    """Compute impact and priority from the firing members (all members once everything resolved).

    ``elsewhere``: the GPUs other open incidents' outages took (called only when a service is hit or a job
    stopped). A service this incident takes replicas from has lost those too: one replica's GPU lost here and
    two replicas' GPUs on another node there are 30% of ten replicas lost, P1, in both incidents (each is its
    own fault; the service's loss is one). And they are not spare for a stopped job to start again on."""
    live = [m for m in members if _live(m)] or list(members)
    failed = failed_gpus(root_path, root, live, inventory)
    degraded: set[GpuKey] = set()
    for m in live:
        if m.is_infra and not m.is_outage:
            degraded |= gpu_keys(m.location.path, inventory)
    shares: dict[WorkloadRef, float] = {}
    stopped: dict[WorkloadRef, int] = {}
    unavailable: set[WorkloadRef] = set()  # said down by an alert, not counted down from lost replicas
    combined = False
    unready: dict[WorkloadRef, int] = {}  # replicas not Ready before the fault, counted lost with it
    own: dict[WorkloadRef, float] = {}  # a service's share this incident took, where others took more
    others: frozenset[GpuKey] | None = None  # asked for only when a service is hit
    named = pods_on(live, inventory)
    for info, units in _touched(inventory, failed, degraded, named):
        hit = len(units)
        if hit and elsewhere is not None and info.ref.kind is WorkloadKind.INFERENCE_SERVICE:
            others = elsewhere() if others is None else others
            total = len(units_hit(info, failed | others, named))
            if total > hit:
                combined = True
                own[info.ref] = hit / len(info.units)
            hit = total
        if hit and info.unready and info.ref.kind is WorkloadKind.INFERENCE_SERVICE:
            hit += _unready_too(info, failed | (others or set()), named, hit, unready)
        shares[info.ref] = hit / len(info.units) if info.units else 0.0
        if hit and info.ref.kind is WorkloadKind.TRAINING_JOB:
            stopped[info.ref] = gpus_lost(info, units, failed)
    for m in live:
        if m.measured_of is not m.annotations:  # else read already (see ``read_measures``)
            read_measures(m)
    error_ratio = max(map(_ERROR_RATIO, live), default=0.0)  # in C: no tuple per member per recompute
    burn = max(map(_BURN_RATE, live), default=0.0)
    for m in live:
        for ref in m.location.workloads:
            shares.setdefault(ref, 0.0)
            if m.kind is FaultKind.JOB_STALLED and ref.kind is WorkloadKind.TRAINING_JOB:
                stopped.setdefault(ref, 0)
                shares[ref] = 1.0
            if ref.kind is WorkloadKind.INFERENCE_SERVICE and says_down(m.labels.get("alertname", "")):
                shares[ref] = 1.0
                unavailable.add(ref)
    spare = assume_spare_capacity
    if inventory is not None and stopped:
        if elsewhere is not None and others is None:
            others = elsewhere()
        spare = has_spare(inventory, root_path, stopped, assume_spare_capacity, failed | (others or set()))
    throttling = any(
        m.kind is FaultKind.POWER_BRAKE or throttles(m.labels.get("alertname", "")) for m in live
    )
    nodes = _nodes(live, failed)
    priority, reason = priority_of(
        root,
        shares=shares,
        stopped=stopped,
        spare=spare,
        error_ratio=error_ratio,
        burn=burn,
        throttling=throttling,
        capacity_lost=bool(failed or nodes),
        degrading=first_degrading(live),
    )
    reason = reason_notes(reason, combined, shares, unready, own)
    namespaced = namesakes([*shares, root.target], inventory)
    parts = _impact_parts(
        root,
        nodes,
        failed,
        stopped,
        shares,
        unavailable=frozenset(unavailable),
        own=own,
        namespaced=namespaced,
    )
    impact = Impact(
        workloads=tuple(sorted(shares, key=str)),
        affected_share=max(shares.values(), default=0.0),
        error_ratio=error_ratio,
        slo_burn_rate=burn,
        gpus_affected=len(failed | degraded),
        nodes_affected=len(nodes | _nodes_named(live, degraded)),
        spare_capacity=spare,
        parts=parts,
        namespaced=namespaced,
    )
    return Assessment(
        impact,
        priority,
        reason,
        {str(k): v for k, v in shares.items()},
        tuple(sorted(str(r) for r in stopped)),
        frozenset(failed),
        root_down_now(root_path, root, members, inventory),
    )


def root_down_now(root_path: Path, root: RootCause, members: Sequence[Member], inv: Inventory | None) -> bool:
    """For a node-down or rack-down root: whether that node, or every node of that rack, is down now."""
    if root.kind not in (FaultKind.NODE_DOWN, FaultKind.RACK_DOWN) or not root_path:
        return True
    live = [m for m in members if _live(m) and m.is_outage]
    if any(m.location.path == root_path for m in live):
        return True
    if root.kind is FaultKind.NODE_DOWN:
        # A node's: its own outage says it is down, and so does every GPU of it lost (as its root was found:
        # the GPU exporter's alerts before node_exporter's NodeDown, or without one).
        on_node = [m for m in live if contains(root_path, m.location.path)]
        return len(root_path) != RACK_DEPTH + 1 or gpus_take_node(root_path, on_node, inv)
    return len(root_path) != RACK_DEPTH or _every_node_down(root_path, live, inv)


def _impact_parts(
    root: RootCause,
    nodes: set[tuple[str, str]],
    failed: set[GpuKey],
    stopped: Mapping[WorkloadRef, int],
    shares: Mapping[WorkloadRef, float],
    *,
    unavailable: frozenset[WorkloadRef] = frozenset(),
    own: Mapping[WorkloadRef, float] | None = None,
    namespaced: frozenset[WorkloadRef] = frozenset(),
) -> tuple[str, ...]:
    """What the fault costs, one item each: nodes and GPUs counted, then every workload it hits
    (``prod/llama`` where ``namespaced`` says the name alone is ambiguous)."""

    def label(ref: WorkloadRef) -> str:
        return target_label(ref, namespaced=ref in namespaced)

    parts = []
    if nodes:
        parts.append(f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}")
    if failed:
        parts.append(f"{len(failed)} GPU{'s' if len(failed) != 1 else ''}")
    for ref in sorted(stopped, key=str):
        parts.append(f"{label(ref)} stopped")
    for ref, share in sorted(shares.items(), key=lambda kv: str(kv[0])):
        if ref.kind is WorkloadKind.INFERENCE_SERVICE and ref in unavailable:
            parts.append(f"{label(ref)} unavailable")
        elif ref.kind is WorkloadKind.INFERENCE_SERVICE and own and ref in own:
            # The service's loss across incidents is in the priority's reason; a sharer's title is not
            # rewritten each time another incident takes a replica (see ``alerting.sharers``).
            parts.append(f"{label(ref)} {percent(own[ref])} of replicas lost (more in other incidents)")
        elif ref.kind is WorkloadKind.INFERENCE_SERVICE and share > 0:
            parts.append(f"{label(ref)} {percent(share)} of replicas lost")
    return tuple(parts)


def namesakes(targets: Iterable[Target], inventory: Inventory | None) -> frozenset[WorkloadRef]:
    """The workloads of ``targets`` whose kind and name another namespace has too (services ``llama`` in
    ``prod`` and in ``staging``), in the inventory or among ``targets`` (workloads alerts named). Titles
    and impact name them as kubectl does, ``prod/llama``; a name only one namespace has stays short, so
    titles do not change where nothing is ambiguous. A workload of no namespace (a Slurm job) is left as
    it is."""
    refs = [r for r in targets if isinstance(r, WorkloadRef) and r.namespace]
    seen: dict[tuple[WorkloadKind, str], set[str]] = {}
    for ref in refs:
        seen.setdefault((ref.kind, ref.name), set()).add(ref.namespace)
    out = set()
    for ref in refs:
        spaces = seen[(ref.kind, ref.name)]
        if inventory is not None and len(spaces) < 2:
            spaces = spaces | inventory.namespaces(ref.kind, ref.name)
        if len(spaces) > 1:
            out.add(ref)
    return frozenset(out)

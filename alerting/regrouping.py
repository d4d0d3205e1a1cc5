"""Regrouping: a training job's stalled ranks go to the incident whose fault holds their GPUs.

A job's ranks stall wherever a fault hits one of them (a collective waits for all), so a stall alert can
join any incident that holds the job. Where the inventory places the alert's rank (``Location.runs_on``),
the incident whose root holds that GPU explains it best; but it may not exist yet when the stall arrives
(Prometheus sends a rule's alerts in any order, the stall before the rack's node-down), or a stall-only
incident that a fault re-rooted may hold ranks of another fault. The merge pass then moves those stalls
where their GPU's fault is, so that the result does not depend on the order the alerts came in.
"""

from __future__ import annotations

from collections.abc import Iterable

from alerting.batch import Batch, OpenIncident
from alerting.correlation import Member
from alerting.faults import SYMPTOM_KINDS
from alerting.store_models import AlertRow
from alerting.topology import Path, contains


def holds(root: Path, member: Member) -> bool:
    """Whether an incident rooted at ``root`` holds the GPU of ``member``'s rank."""
    return bool(root) and any(contains(root, gpu) for gpu in member.location.runs_on)


def _misplaced(member: Member, root: Path) -> bool:
    """A stalled rank whose GPU the inventory places and an incident rooted at ``root`` does not hold."""
    return member.kind in SYMPTOM_KINDS and bool(member.location.runs_on) and not holds(root, member)


def regroup_ranks(batch: Batch, inc: OpenIncident, others: Iterable[OpenIncident]) -> set[str]:
    """Move into ``inc`` the other incidents' stalled ranks whose GPU its root holds and theirs does not,
    and move ``inc``'s own such ranks to an incident whose root holds their GPU; the ids of the incidents
    whose members changed (``inc`` among them when any did). Every touched incident asks this of every open
    incident, which was a fifth of the applier's time: each incident keeps its placed stalled ranks and the
    clusters of their GPUs (``OpenIncident.stalled_ranks``), so only those are walked, and the transaction
    keeps whether a root holds a member's GPU (``Batch.held``; it depends on nothing else)."""
    if not inc.root_path:
        return set()
    memo = batch.held

    def held(root: Path, fp: str, member: Member) -> bool:
        key = (fp, root)
        if key not in memo:
            memo[key] = holds(root, member)
        return memo[key]

    changed: set[str] = set()
    rest = [o for o in others if o.id != inc.id and o.members]
    for other in rest:
        if not other.root_path:
            continue  # a stall-only incident: the merge pass folds it whole into the job's fault
        ranks, clusters = other.stalled_ranks()
        if inc.root_path[0] not in clusters:
            continue  # none of its ranks' GPUs is in the cluster of ``inc``'s root
        due = [
            fp
            for fp in ranks
            if not held(other.root_path, fp, other.members[fp]) and held(inc.root_path, fp, other.members[fp])
        ]
        if due and len(due) < len(other.members):  # a rooted incident keeps its fault's alerts
            _move(batch, other, inc, due)
            changed |= {other.id, inc.id}
    if not rest:  # nowhere to move its own ranks: a wide incident alone is not walked at every batch
        return changed
    for fp, member in [(fp, inc.members[fp]) for fp in inc.stalled_ranks()[0]]:
        if not _misplaced(member, inc.root_path):
            continue
        target = next((o for o in rest if holds(o.root_path, member)), None)
        if target is not None and len(inc.members) > 1:
            _move(batch, inc, target, [fp])
            changed |= {target.id, inc.id}
    return changed


def _move(batch: Batch, source: OpenIncident, target: OpenIncident, fingerprints: list[str]) -> None:
    """Move alerts from ``source`` to ``target`` (their stored rows too); one timeline event each side."""
    for fp in fingerprints:
        target.members[fp] = source.members.pop(fp)
        alert = batch.rows.get(fp) or batch.session.get(AlertRow, fp)
        if alert is not None:
            alert.incident_id = target.id
    source.forget_facts()  # members left: the facts builder only ever adds
    target.last_alert_at = max(target.last_alert_at, source.last_alert_at)
    n = len(fingerprints)
    batch.event(
        source.id,
        "alerts_moved",
        f"{n} stalled rank alert{'s' if n > 1 else ''} moved to {target.id}, whose fault holds their GPUs",
        {"to": target.id, "fingerprints": fingerprints},
    )
    batch.event(
        target.id,
        "alerts_moved",
        f"took {n} stalled rank alert{'s' if n > 1 else ''} from {source.id}: its fault holds their GPUs",
        {"from": source.id, "fingerprints": fingerprints},
    )

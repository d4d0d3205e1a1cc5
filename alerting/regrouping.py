"""Regrouping: a training job's stalled ranks go to the incident whose fault holds their GPUs.

A job's ranks stall wherever a fault hits one of them (a collective waits for all), so a stall alert can
join any incident that holds the job. Where the inventory places the alert's rank (``Location.runs_on``),
the incident whose root holds that GPU explains it best; but it may not exist yet when the stall arrives
(Prometheus sends a rule's alerts in any order, the stall before the rack's node-down), or a stall-only
incident that a fault re-rooted may hold ranks of another fault. The merge pass then moves those stalls
where their GPU's fault is, so that the result does not depend on the order the alerts came in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from alerting.batch import Batch, OpenIncident
from alerting.correlation import join_rank
from alerting.inventory import Inventory
from alerting.member import Member
from alerting.root_cause import evidence
from alerting.store_models import IncidentRow
from alerting.topology import Path, contains


def holds(root: Path, member: Member) -> bool:
    """Whether an incident rooted at ``root`` holds the GPU of ``member``'s rank."""
    return bool(root) and any(contains(root, gpu) for gpu in member.location.runs_on)


def roots(inc: OpenIncident, member: Member) -> bool:
    """Whether a fault of ``inc`` would root ``member``, a stalled rank, were it moved there: an outage, or a
    fault that began no later than the stall. Only faults that began after it and take nothing (a GPU of the
    rank's braking after the job stalled) are evidence (``root_cause.evidence``): moved there, the stall would
    re-root the incident at the job, which then merges into the job's fault elsewhere, evidence and all, where
    posted with an outage of its GPU the evidence stays with that outage."""
    infra = [m for m in inc.members.values() if m.is_infra]
    return not infra or any(not evidence([member], m) for m in infra)


def regroup_ranks(batch: Batch, inc: OpenIncident, others: Iterable[OpenIncident]) -> set[str]:
    """Move into ``inc`` the other incidents' stalled ranks whose GPU its root holds and theirs does not (or
    holds as a wider place), and move ``inc``'s own such ranks to the most specific root that holds their
    GPU; the ids of the incidents whose members changed (``inc`` among them when any did). Every touched
    incident asks this of every open incident, which was a fifth of the applier's time: each incident keeps
    its placed stalled ranks and the clusters of their GPUs (``OpenIncident.stalled_ranks``), so only those
    are walked, and the transaction keeps whether a root holds a member's GPU (``Batch.held``; it depends
    on nothing else)."""
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
        wider = len(inc.root_path) > len(other.root_path)
        due = [
            fp
            for fp in ranks
            if held(inc.root_path, fp, other.members[fp])
            and (wider or not held(other.root_path, fp, other.members[fp]))
            and roots(inc, other.members[fp])
        ]
        if due and len(due) < len(other.members):  # a rooted incident keeps its fault's alerts
            _move(batch, other, inc, sorted(due))  # as a restart reads them too (not in join order)
            changed |= {other.id, inc.id}
    if not rest:  # nowhere to move its own ranks: a wide incident alone is not walked at every batch
        return changed
    moves: list[tuple[str, OpenIncident]] = []
    for fp in inc.stalled_ranks()[0]:
        # Where its GPU's fault is: another incident's root that holds it, where ``inc``'s does not or is
        # wider (a rollout's cluster holds every GPU; an NVSwitch's node is where the rank's fault is).
        member = inc.members[fp]
        mine = len(inc.root_path) if holds(inc.root_path, member) else -1
        holders = [
            o for o in rest if len(o.root_path) > mine and holds(o.root_path, member) and roots(o, member)
        ]
        target = max(holders, key=lambda o: len(o.root_path), default=None)
        if target is not None:
            moves.append((fp, target))
    # By fingerprint, not member order: a restart reads members in stored order, not the order they joined
    # in, and the order says which rank stays last and in which order the timelines tell the moves.
    # One move per incident taking ranks (one timeline entry each side, one "also" line in the thread, not
    # one per rank); ``inc`` keeps at least one alert.
    left = len(inc.members)
    taken: dict[str, tuple[OpenIncident, list[str]]] = {}
    for fp, target in sorted(moves, key=lambda move: move[0]):
        if left > 1:
            taken.setdefault(target.id, (target, []))[1].append(fp)
            left -= 1
    for target, fps in taken.values():
        _move(batch, inc, target, fps)
        changed |= {target.id, inc.id}
    return changed


def regroup_spread(
    batch: Batch,
    inc: OpenIncident,
    others: Iterable[OpenIncident],
    inventory: Inventory | None,
    *,
    held: Callable[[str], bool],
    end_if_beside: Callable[[OpenIncident, list[Member], str], object],
) -> set[str]:
    """Move the alerts of a signal spreading (a driver rollout's XID 119) that another incident holds beside
    a fault of its own (a node down, an NVSwitch failing on a node the rollout reached) into the spread's
    incident, as ``best_candidate`` would have put them had the spread existed when they came; ``inc`` is
    either side. A silence moves nothing apart (it mutes an incident, not how alerts group): alerts that
    move out of an incident no silence holds into one a silence holds (``held``) first end that silence
    where they are a fault beside the one it was set for, by the rule of joins and merges
    (``end_if_beside``: the spread's incident, the alerts, why; ``MuteTracking._end_if_beside``, which also
    names them where the transaction ended it already). Out of a held incident, an alert goes where it
    groups, and pages there as the incident it joins does. The ids of the incidents whose members
    changed."""
    rest = [o for o in others if o.id != inc.id and o.members]
    if inc.facts().spread_of is not None:
        pairs = [(inc, o) for o in rest]
    else:
        pairs = [(o, inc) for o in rest if o.facts().spread_of is not None]
    changed: set[str] = set()
    for spread, holder in pairs:
        due = _strays(spread, holder, inventory)
        if not due:
            continue
        if not held(holder.id):
            moved_in = f"XID alerts of {holder.id} moved in (a rollout spreading)"
            beside = f"{moved_in}, a fault beside the one the silence was set for"
            end_if_beside(spread, [holder.members[fp] for fp in due], beside)
        _move(batch, holder, spread, due, what="XID", why="they are its XID spreading (a rollout)")
        changed |= {spread.id, holder.id}
    return changed


def _strays(spread: OpenIncident, holder: OpenIncident, inventory: Inventory | None) -> list[str]:
    """``holder``'s alerts of ``spread``'s signal that ``spread`` would take, where ``holder`` keeps alerts
    of another fault (it is not a piece of the spread: the merge pass folds those) and does not spread the
    signal itself."""
    signal, facts = spread.facts().spread_of, holder.facts()
    if signal is None or facts.spread_of is not None or signal in facts.signals:
        return []
    if not any(signal[1] in kinds for kinds in facts.node_kinds.values()):
        return []  # no alert of the kind (cheap: per node, not per alert)
    same = [fp for fp, m in holder.members.items() if m.is_infra and m.signal == signal]
    if not same or all(m.signal == signal for m in holder.members.values() if m.is_infra):
        return []
    candidate = spread.candidate()
    # Sorted: the order of the members differs after a restart (stored order, not join order).
    return sorted(fp for fp in same if join_rank(candidate, holder.members[fp], inventory) is not None)


def _move(
    batch: Batch,
    source: OpenIncident,
    target: OpenIncident,
    fingerprints: list[str],
    *,
    what: str = "stalled rank",
    why: str = "its fault holds their GPUs",
) -> None:
    """Move alerts from ``source`` to ``target`` (their stored rows too); one timeline event each side."""
    for fp in fingerprints:
        target.members[fp] = source.members.pop(fp)
        # Of the taker's opening, as a restart reads the event (``joining.earlier_members``).
        source.earlier.discard(fp)
        target.earlier.discard(fp)
        batch.refile(fp, target.id)
    source.forget_facts()  # members left: the facts builder only ever adds
    source.root_moved = True
    target.last_alert_at = max(target.last_alert_at, source.last_alert_at)
    row = batch.session.get(IncidentRow, target.id)
    if row is not None:  # stored with it, as a merge stores it (``merging``)
        row.last_alert_at = target.last_alert_at
    key = (source.id, target.id, what, why)
    earlier = batch.moved.get(key)
    if earlier is not None:  # moved between the same two before in this transaction: one entry each side
        fingerprints = [*earlier[0].data["fingerprints"], *fingerprints]
    alerts = f"{len(fingerprints)} {what} alert{'s' if len(fingerprints) > 1 else ''}"
    said: tuple[tuple[str, str, dict[str, object]], ...] = (
        (source.id, f"{alerts} moved to {target.id}: {why}", {"to": target.id, "fingerprints": fingerprints}),
        (
            target.id,
            f"took {alerts} from {source.id}: {why}",
            {"from": source.id, "fingerprints": fingerprints},
        ),
    )
    if earlier is None:
        batch.moved[key] = (
            batch.event(said[0][0], "alerts_moved", said[0][1], said[0][2]),
            batch.event(said[1][0], "alerts_moved", said[1][1], said[1][2]),
        )
        return
    for event, (_, message, data) in zip(earlier, said, strict=True):
        event.message, event.data = message, data  # a new dict: the JSON column sees the change

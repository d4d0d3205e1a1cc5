"""Sharers: the other open incidents to assess again when one incident took (or gave back) GPUs, because
what they say depends on it: a service's loss across incidents crossed a priority tier, a sharer's title now
says (or no longer says) that other incidents took more of the service, or a stopped job's chance to start
again moved. Only those: reassessing every sharer at every alert made a storm of single-GPU incidents on one
service quadratic in Slack edits (``alerting.grouping``)."""

from __future__ import annotations

from alerting.batch import OpenIncident
from alerting.capacity import units_hit
from alerting.incident_index import OpenIncidents
from alerting.inventory import GpuKey, Inventory, WorkloadInfo
from alerting.member import live
from alerting.priority import SEVERE_SHARE
from gpuwarden.model import WorkloadKind


def sharers(
    open_incidents: OpenIncidents, inc: OpenIncident, lost: frozenset[GpuKey], inventory: Inventory | None
) -> set[str]:
    """Other open incidents to assess again because ``inc`` took (or gave back) replicas of a service they
    hit too, so that the service's loss across incidents crossed a priority tier (none, some, 25%, all), or
    the replicas others took beyond theirs went from none to some or back (their title's "more in other
    incidents", ``impact._impact_parts``): as each incident is assessed after it, whether its alerts came
    before ``inc``'s in one POST or in one of their own. And those with a stopped job when ``inc`` took free
    GPUs of its cluster (``restart_sharers``)."""
    if inventory is None or lost == inc.lost:
        return set()
    changed = lost ^ inc.lost
    due = restart_sharers(open_incidents, inc, changed, inventory)
    infos = [i for i in inventory.workloads_on(changed) if i.ref.kind is WorkloadKind.INFERENCE_SERVICE]
    if not infos:
        return due
    now = open_incidents.lost_by_others(None)
    before = (now - inc.lost) | lost
    for info in infos:
        crossed = tier(info, before) != tier(info, now)
        taken_before, taken_now = len(units_hit(info, before)), len(units_hit(info, now))
        for o in open_incidents.values():
            if o.id == inc.id or info.ref not in o.workloads:
                continue
            if crossed and o.lost:
                due.add(o.id)
                continue
            own = len(units_hit(info, o.lost))
            if (taken_before > own) != (taken_now > own) and live(o.members):
                due.add(o.id)
    return due


def restart_sharers(
    open_incidents: OpenIncidents, inc: OpenIncident, changed: frozenset[GpuKey], inventory: Inventory
) -> set[str]:
    """Other open incidents with a training job in a cluster where ``inc`` took or gave back free GPUs, or
    with a job it took or gave back GPUs of: whether those jobs can start again depends on it."""
    clusters = {
        k[0] for k in changed if (node := inventory.node(k[1], k[0])) is not None and k[2] in node.idle
    }
    jobs = {i.ref for i in inventory.workloads_on(changed) if i.ref.kind is WorkloadKind.TRAINING_JOB}
    return {
        o.id
        for o in open_incidents.values()
        if o.id != inc.id
        and any(
            w in jobs or (w.kind is WorkloadKind.TRAINING_JOB and w.cluster in clusters) for w in o.workloads
        )
        and any(m.firing or m.flapping for m in o.members.values())
    }


def tier(info: WorkloadInfo, lost: frozenset[GpuKey]) -> int:
    """Which of DESIGN.md's service tiers a loss is in: none, some, at least a quarter, all."""
    share = len(units_hit(info, lost)) / len(info.units) if info.units else 0.0
    return 0 if share == 0 else 3 if share >= 1 else 2 if share >= SEVERE_SHARE else 1

"""Lateness: an alert posted after alerts on its node that began after it, as several Alertmanagers, their
retries or several anomaly services deliver them, goes where posting in onset order would have put them.

Posted in onset order, an alert that began later joins the incident of one that began before it on its node
when that incident explains it (a stale exporter after its node's GPU ran hot: the node's heat). Posted
first, the later alert opened an incident of its own, and the earlier one, coming after, opened another or
joined something else: two incidents where onset order makes one. The merge pass of the incident the late
alert came into folds in such an incident of its node that existed before the transaction, every alert of
which began after the late one, when its first alert would have joined the incident as it stood then (its
alerts that began before: ``correlation.join_rank``). Only across POSTs: a POST's own alerts are merged at
its end, as before.
"""

from __future__ import annotations

from collections.abc import Container, Iterable
from datetime import datetime

from alerting.batch import Batch, OpenIncident
from alerting.correlation import Candidate, join_rank
from alerting.impact import live_root_cause
from alerting.incident_index import OpenIncidents
from alerting.inventory import Inventory
from alerting.member import Member
from alerting.root_cause import root_cause
from alerting.store_models import IncidentRow
from alerting.topology import RACK_DEPTH, UNKNOWN, contains
from gpuwarden.model import IncidentState, Priority, add_workloads


def came_after(
    inc: OpenIncident,
    arrived: datetime,
    open_incidents: OpenIncidents,
    inventory: Inventory | None,
    skip: Container[str],
) -> list[OpenIncident]:
    """The open incidents of ``inc``'s node (not ``skip``'s: opened in this transaction) whose alerts all
    began after ``arrived`` (the earliest onset of an alert ``inc`` took in this transaction) and would
    have come into ``inc`` posted in onset order."""
    root = inc.root_path
    if not root and inc.workloads and inventory is not None:
        # A workload's symptom alone: posted in onset order, the first fault after it on a node the workload
        # runs on joined it (``correlation.join_rank``), and the incident was rooted there.
        near: dict[str, OpenIncident] = {}
        for cluster, name in {(cluster, name) for cluster, name, _ in inc.placed}:
            node = inventory.node(name, cluster)
            path = (cluster, node.rack if node is not None and node.rack else UNKNOWN, name)
            near.update((o.id, o) for o in open_incidents.under(path) if contains(path, o.root_path))
        later = sorted(_later(inc, arrived, near.values(), inventory, skip), key=_first_onset)
        return later[:1]
    if len(root) <= RACK_DEPTH:
        return []  # a rack's or a cluster's incident: the merge pass's own rules
    on = root[: RACK_DEPTH + 1]  # its node; ``under`` may give more (its full scan, which tests compare with)
    return _later(
        inc, arrived, (o for o in open_incidents.under(on) if contains(on, o.root_path)), inventory, skip
    )


def existed_then(
    batch: Batch, candidates: list[Candidate], new: Member, inventory: Inventory | None
) -> list[Candidate]:
    """``candidates`` for ``new`` to join without those stored before this transaction, rooted within a
    node or without a root, whose alerts all began after it, unless their first alert would have joined
    ``new``'s own incident (``would_join``): posted in onset order, ``new`` came before them and did not
    see them (a stale exporter posted after its node's GPU that fell off the bus later joined that GPU's
    incident, where in onset order the two stayed apart). A rack's or a cluster's outage or spread is kept
    (``_grew_by_merges``): left out, a late alert of it opened an incident of its own that a later POST
    merged, paged already (``test_announcing``'s shuffled rollout and rack outage)."""
    kept = []
    alone: OpenIncident | None = None
    for c in candidates:
        if not c.members or batch.is_new(c.id) or _grew_by_merges(c):
            kept.append(c)
            continue
        row = batch.session.get(IncidentRow, c.id)  # held by the session: read once a transaction
        if row is None or row.first_onset_at <= new.onset:
            kept.append(c)
            continue
        if alone is None:
            path, _ = root_cause([new], inventory)
            alone = OpenIncident(
                "", path, Priority.P3, IncidentState.TRIGGERED, batch.now, {new.fingerprint: new}
            )
            alone.workloads = new.location.workloads
        first = min(c.members, key=lambda m: (m.onset, m.fingerprint))
        if first.onset <= new.onset or would_join(alone, first, inventory):
            kept.append(c)
    return kept


def _grew_by_merges(c: Candidate) -> bool:
    """Whether ``c`` is a rack's or a cluster's outage or signal spreading (a driver rollout's XIDs): what
    grew by merges too (nodes down beside each other, a spread), which ``join_rank`` does not say."""
    if len(c.root_path) not in range(1, RACK_DEPTH + 1):
        return False
    facts = c.facts()
    return facts.outage_kind or facts.spread_of is not None


def _later(
    inc: OpenIncident,
    arrived: datetime,
    others: Iterable[OpenIncident],
    inventory: Inventory | None,
    skip: Container[str],
) -> list[OpenIncident]:
    found = []
    for other in others:
        if other.id == inc.id or other.id in skip or not other.members:
            continue
        first = _first(other)
        if first.onset > arrived and would_join(inc, first, inventory):
            found.append(other)
    return found


def _first(inc: OpenIncident) -> Member:
    return min(inc.members.values(), key=lambda m: (m.onset, m.fingerprint))


def _first_onset(inc: OpenIncident) -> tuple[datetime, str]:
    first = _first(inc)  # not the incident's random id: the same alerts break a tie alike in every run
    return first.onset, first.fingerprint


def would_join(inc: OpenIncident, new: Member, inventory: Inventory | None) -> bool:
    """Whether ``new`` would have joined ``inc`` as it stood when ``new`` began (its alerts begun before)."""
    before = [m for m in inc.members.values() if m.onset < new.onset]
    if not before:
        return False
    path, _ = live_root_cause(before, inventory)
    workloads = add_workloads(frozenset(), [w for m in before for w in m.location.workloads])
    then = Candidate(inc.id, path, workloads, before, inc.last_alert_at)
    return join_rank(then, new, inventory) is not None

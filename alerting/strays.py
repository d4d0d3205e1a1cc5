"""Strays: faults an incident took while it stood otherwise, moved out once a late alert shows they would not
have joined it in onset order.

An incident without a root (a service's latency) takes a fault anywhere on a node its workload runs on, as
evidence. Posted in onset order, a fault that began before that one (a GPU of the service's node lost) came
first and rooted the incident, and the later fault (a power brake on another GPU) stayed apart: the lost GPU
does not explain it. Posted late (several Alertmanagers, their retries), the earlier fault roots the incident
after the later one joined it, or goes into an incident the merge pass then folds the rootless one into:
the later fault stayed inside, shown in the lost GPU's incident. The pass of an incident that took a late
alert, where a fault joined it without a root or it took one without a root in (``Batch.rooted``: only
those took faults as evidence, and a wide incident of thousands is not walked), moves out each firing fault
stored before the transaction that began after the late alert and would not have joined the incident as it
stood when it began (``lateness.would_join``), where the late alert itself would have joined the incident
as it stood when that began (not only for a workload a later fault brought): into the open incident
that takes it now (``best_candidate``), else into an incident of its own, opened for it, as onset order
opened one (batch fuzz ``--shuffle 30``: seeds 281, 297, 302). Each move is one timeline event on each
side, as a regrouping's.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from datetime import datetime, timedelta

from alerting.batch import Batch, OpenIncident
from alerting.correlation import best_candidate, foreign
from alerting.incident_index import OpenIncidents
from alerting.inventory import Inventory
from alerting.lateness import would_join
from alerting.member import Member, live
from alerting.regrouping import _move

WHY = "it began after the late alert that rooted this incident, which does not explain it"


def strays(
    inc: OpenIncident, arrived: datetime, came: Container[str], inventory: Inventory | None
) -> list[Member]:
    """``inc``'s firing faults stored before the transaction (not in ``came``) that began after ``arrived``
    (the earliest onset of an alert it took in this transaction) and would not have joined it as it stood
    when they began, in onset order."""
    found = []
    later = sorted(
        (m for m in inc.members.values() if m.onset > arrived and m.fingerprint not in came),
        key=lambda m: (m.onset, m.fingerprint),
    )
    for member in later:
        if member.is_infra and (member.firing or member.flapping) and not would_join(inc, member, inventory):
            found.append(member)
    return found


class StrayMoving:
    """Moves an incident's strays out; mixed into ``IncidentGrouping``."""

    _open: OpenIncidents
    inventory: Inventory | None
    _window: timedelta
    _open_incident: Callable[[Batch, Member], OpenIncident]  # ``joining.IncidentJoining``'s

    def _move_strays(self, batch: Batch, inc: OpenIncident, settled: set[str]) -> set[str]:
        """Move ``inc``'s strays (``strays``) where they go now, but those in ``settled`` (the alerts of the
        transaction, and those moved already), which takes those it moves; the ids of the incidents whose
        members changed (``inc`` among them when any did)."""
        arrived = batch.arrived.get(inc.id)
        if arrived is None or not inc.root_path or inc.id not in batch.rooted:
            return set()
        late = [m for m in inc.members.values() if m.onset == arrived and m.fingerprint in batch.posted]
        if not any(would_join(inc, m, self.inventory) for m in late):
            return set()  # it came for what the faults after it brought (a job), not as onset order took it
        changed: set[str] = set()
        for member in strays(inc, arrived, settled, self.inventory):
            if len(inc.members) < 2:
                break
            candidates = [  # where it would go, as if it came now, ``inc`` left out
                o.candidate()
                for o in self._open.join_candidates(member, self.inventory)
                if o.id != inc.id and live(o.members) and not foreign(o.root_path, o.workloads, member)
            ]
            chosen = best_candidate(candidates, member, self.inventory)
            target = self._open[chosen.id] if chosen is not None else self._open_incident(batch, member)
            _move(batch, inc, target, [member.fingerprint], what="fault", why=WHY)
            batch.touched.add(target.id)
            settled.add(member.fingerprint)  # once a transaction: the merge pass may fold it back
            changed |= {inc.id, target.id}
        return changed

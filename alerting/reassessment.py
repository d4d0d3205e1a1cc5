"""Open incidents assessed again when the inventory changes (a Slurm or Kubernetes refresh).

``InventoryReassessment`` is mixed into the engine; ``replace_inventory`` says what it keeps and when
listeners hear of a change.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from alerting.batch import Batch, OpenIncident
from alerting.engine_lock import EngineLock
from alerting.grouping import IncidentGrouping, incident_rows, keep_reassessment
from alerting.incident_index import OpenIncidents
from alerting.inventory import Inventory
from alerting.showing import shown_of
from alerting.store_models import IncidentRow, TimelineRow
from alerting.subscriptions import ChangeKind
from alerting.topology import locate
from gpuwarden.clock import Clock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import WorkloadRef, workload_from_dict


class InventoryReassessment(IncidentGrouping):
    """The engine's inventory and what a new one changes; the grouping assesses. See ``replace_inventory``."""

    clock: Clock
    config: AlertingConfig
    inventory: Inventory | None
    inventory_state: tuple[Inventory | None, datetime | None]
    _lock: EngineLock  # the engine's (``alerting.engine_lock``)
    _sessions: sessionmaker[Session]
    _open: OpenIncidents
    _reassessed: bool  # the open incidents were assessed with the current inventory

    def _fresh(self) -> None:
        raise NotImplementedError  # the engine's

    def _rebuild_after_failure(self) -> None:
        raise NotImplementedError  # the engine's

    def _notify(self, changes: Sequence[tuple[str, ChangeKind, TimelineRow]]) -> None:
        raise NotImplementedError  # the engine's: tell listeners after the commit

    def replace_inventory(self, inventory: Inventory) -> None:
        """Use a newer inventory (a Slurm or Kubernetes refresh): new alerts are placed with it, and open
        incidents with firing alerts are placed and assessed again, so their impact and priority follow what
        changed (a job now known, a service whose lost replica was replaced). An inventory equal to the last
        one changes nothing once the open incidents were assessed with it (the first refresh after a start,
        or after a failed one, assesses them anyway); an incident changes (and listeners hear of it) only
        when its assessment does; and a refresh never lowers a priority because a workload the incident
        showed, and an inventory listed as stopped abnormally, has left the inventory (a job that a node
        failure ended, past its keep time). A workload that leaves without having been listed so ended as
        its source knows to be normal (a job that completed, a Deployment deleted): the incident's
        priority follows what is left. A refresh raises a priority at once, but lowers it only once the lower
        assessment held ``priority_settle_seconds`` (an unchanged inventory is assessed again meanwhile)."""
        with self._lock:
            self._fresh()
            previous, self.inventory = self.inventory, inventory
            self.inventory_state = (inventory, self.clock.now())
            if inventory == previous and self._reassessed and not self._lowering():
                # What waits untold (the outbox was unreachable) is told at every refresh, as at one that
                # assesses (a restarted serve's first): a serve tells the same as one restarted before it.
                self._notify([])
                return
            self._notify(self._reassess_open(inventory, previous))

    def _reassess_open(
        self, inventory: Inventory, previous: Inventory | None
    ) -> Sequence[tuple[str, ChangeKind, TimelineRow]]:
        """Place and assess the open incidents again with ``inventory``, the current one (``previous``: the
        one they were assessed with), under the lock; the changes committed, for the caller to tell. See
        ``replace_inventory``."""
        self._reassessed = False
        for inc in self._open.values():
            # Members were located with the old inventory: a job that was unknown then (an alert naming
            # it by Slurm id before the refresh that listed it) is known now.
            for fp, m in inc.members.items():
                inc.members[fp] = replace(m, location=locate(m.labels, m.kind, inventory))
            inc.forget_facts()  # the members moved
            if inc.members:
                self._place_root(inc)  # all of them, before any is assessed
        live = [i for i in self._open.values() if any(m.firing or m.flapping for m in i.members.values())]
        batch = None
        if self._open:
            try:
                with self._sessions() as session, session.begin():
                    batch = Batch(session, self.clock.now())
                    rows = incident_rows(session, list(self._open))  # held: one query a chunk, not each
                    for inc in self._open.values():
                        # Its members placed anew: a reassessment that waits (a lower priority settling) or
                        # is skipped keeps the workloads its last one found.
                        self._set_assessed_workloads(inc, rows.get(inc.id))
                    for inc in live:
                        self._reassess(batch, inc, inventory, previous)
            except Exception:
                self._rebuild_after_failure()  # the view back to what the store holds; the caller logs it
                raise
        self._reassessed = True
        return batch.changes if batch is not None else []

    def _lowering(self) -> bool:
        """Whether an open incident waits to be lowered (an unchanged inventory may now let it)."""
        return any(inc.lower_since is not None for inc in self._open.values())

    def _reassess(
        self, batch: Batch, inc: OpenIncident, current: Inventory, previous: Inventory | None
    ) -> None:
        """One open incident after an inventory change to ``current`` (see ``replace_inventory``)."""
        row = batch.session.get(IncidentRow, inc.id)
        if row is None:
            return
        shown = {workload_from_dict(w) for w in (row.impact or {}).get("workloads", [])}
        for inventory in (previous, current):
            if inventory is not None:
                inc.stopped |= {w for w in shown if _listed_stopped(inventory, w)}
        keep_reassessment(inc, row)
        members = list(inc.members.values())
        path, root, assessment = self._assessed(inc, members, current)
        gone = any(
            current.find_workload(w.kind, w.name, w.namespace, w.cluster) is None for w in inc.stopped & shown
        )
        if gone and assessment.priority.value > row.priority:  # "P3" > "P0": less urgent
            return
        before = shown_of(row)
        updated_at = row.updated_at
        self._recompute(batch, inc, (path, root, assessment), settle=True)
        if shown_of(row) == before:
            row.updated_at = updated_at  # nothing to tell anyone
            batch.drop_changes(inc.id)


def _listed_stopped(inventory: Inventory, ref: WorkloadRef) -> bool:
    """Whether the inventory lists the workload with units that stopped abnormally (kept a while)."""
    found = inventory.find_workload(ref.kind, ref.name, ref.namespace, ref.cluster)
    info = inventory.workload(found) if found is not None else None
    return info is not None and info.kept > 0

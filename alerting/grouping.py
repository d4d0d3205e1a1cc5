"""Grouping: after a transaction's alerts joined incidents, recompute each touched incident's root cause,
impact, priority and title, and fold into it the open incidents its (new) root explains (the merge pass,
``alerting.merging``).

``IncidentGrouping`` is the part of ``IncidentEngine`` that does it, over the engine's in-memory open
incidents and the transaction's ``Batch``; the events that tell what changed are ``alerting.showing``'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerting.batch import Batch, OpenIncident, ToldAs
from alerting.correlation import placement
from alerting.db import in_lists
from alerting.engine_lock import EngineLock
from alerting.flapping import FlapPolicy, flap_state, settles_after
from alerting.impact import Assessment, assess, failed_gpus, live_root_cause, root_down_now
from alerting.incident_index import OpenIncidents
from alerting.inventory import GpuKey, Inventory
from alerting.lifecycle import close
from alerting.member import Member, first_onset, recommended_by
from alerting.merging import IncidentMerging
from alerting.regrouping import regroup_ranks, regroup_spread
from alerting.root_cause import kept_root
from alerting.sharers import sharers
from alerting.showing import same_target, tell_reassessed, tell_root_moved, told_of
from alerting.store import impact_from_dict, impact_to_dict, with_peak
from alerting.store_models import AlertRow, IncidentRow
from alerting.strays import StrayMoving
from alerting.subscriptions import ChangeKind
from alerting.titles import carried, degraded_series, progress, seen, title, title_cluster, without_progress
from alerting.topology import Path, target_label, target_to_dict
from gpuwarden.config import AlertingConfig
from gpuwarden.model import IncidentState, RootCause, WorkloadRef, add_workloads, fault_name

REGROUP_PASSES = 2
"""Times one transaction lets an incident move stalled ranks (``regroup_ranks``): a move may change the roots
it depends on (a stall's onset bounds which faults explain it), and must not loop."""


class IncidentGrouping(IncidentMerging, StrayMoving):
    """Root cause, impact, priority and merges of open incidents; mixed into ``IncidentEngine``."""

    config: AlertingConfig
    inventory: Inventory | None
    _open: OpenIncidents
    _flap: FlapPolicy
    _window: timedelta
    _quiet: timedelta
    _sessions: sessionmaker[Session]
    _lock: EngineLock  # the engine's (``alerting.engine_lock``)

    def _set_workloads(self, inc: OpenIncident, workloads: frozenset[WorkloadRef]) -> None:
        if workloads != inc.workloads:
            inc.workloads, inc.placed = workloads, placement(workloads, self.inventory)

    def _place_root(self, inc: OpenIncident) -> None:
        """Its root path (where alerts join it) and the GPUs its live outages take (counted lost in others'
        shares), from its members as they are now and the current inventory, as its assessment finds them
        and a restart reads them (``reloading``); where no assessment follows, as when all its alerts
        resolved (the quiet period), it follows them all the same."""
        inc.root_path, root = live_root_cause(inc.members.values(), self.inventory)
        inc.lost = frozenset(failed_gpus(inc.root_path, root, list(inc.members.values()), self.inventory))

    def _set_assessed_workloads(self, inc: OpenIncident, row: IncidentRow | None) -> None:
        """Its members' workloads and those its last assessment found on its GPUs, stored with its impact
        (``row``'s): its members' labels alone miss a job whose GPUs only the inventory names. What a
        restart reads, and what an inventory refresh keeps until an assessment replaces it."""
        assessed = impact_from_dict(row.impact or {}).workloads if row is not None and inc.members else ()
        # Placed anew with the current inventory (a refresh's) though they stay: a workload that left it, or
        # moved, no longer holds the GPUs it had, as a restart places it (restart fuzz seed 2232).
        workloads = add_workloads(self._workloads_of(inc, None), assessed)
        inc.workloads, inc.placed = workloads, placement(workloads, self.inventory)

    def _workloads_of(self, inc: OpenIncident, assessment: Assessment | None) -> frozenset[WorkloadRef]:
        found: list[WorkloadRef] = list(assessment.impact.workloads) if assessment is not None else []
        for m in inc.members.values():
            found.extend(m.location.workloads)
        return add_workloads(frozenset(), found)

    def _finish(self, batch: Batch) -> None:
        """Recompute root cause, impact and priority of touched incidents; merge what one fault explains."""
        batch.tell_added()
        # Earliest onset first (popped from the end): the set's order is the string hash's, another per run.
        pending = sorted((i for i in batch.touched if i in self._open), key=self._order, reverse=True)
        sharers: set[str] = set()
        regrouped: dict[str, int] = {}
        settled = set(batch.posted)  # this transaction's alerts: no stray moves out of where they went
        while pending:
            batch.progress()
            incident_id = pending.pop()
            inc = self._open.get(incident_id)
            if inc is None:
                continue
            lost = inc.lost
            self._recompute(batch, inc)
            took = self._merge_into(batch, inc)
            if took is not None:
                pending.append(took)
            elif strayed := self._move_strays(batch, inc, settled):
                pending.extend(sorted(strayed, key=self._order, reverse=True))
            elif regrouped.get(inc.id, 0) < REGROUP_PASSES:
                regrouped[inc.id] = regrouped.get(inc.id, 0) + 1
                moved = regroup_ranks(batch, inc, self._open.rank_partners(inc))
                moved |= regroup_spread(
                    batch,
                    inc,
                    self._open.signal_partners(inc),
                    self.inventory,
                    held=lambda i: self._held(i, batch.silence_time()),
                    end_if_beside=lambda o, members, why: self._end_if_beside(batch, o, members, lambda: why),
                )
                pending.extend(sorted(moved, key=self._order, reverse=True))
            if inc.lost != lost:
                sharers |= self._sharers(inc, lost)
        for incident_id in sorted((i for i in sharers if i in self._open), key=self._order):
            # their priority moves; what they hold does not
            if incident_id in self._open:
                self._recompute(batch, self._open[incident_id])

    def _sharers(self, inc: OpenIncident, lost: frozenset[GpuKey]) -> set[str]:
        """Other open incidents to assess again because ``inc`` took (or gave back) ``lost``'s GPUs
        (``alerting.sharers``)."""
        return sharers(self._open, inc, lost, self.inventory)

    def _elsewhere(self, inc: OpenIncident) -> Callable[[], frozenset[GpuKey]]:
        """The GPUs other open incidents' outages took (``assess`` asks when ``inc`` hits a service)."""
        return lambda: self._open.lost_by_others(inc.id)

    def _assessed(
        self, inc: OpenIncident, members: Sequence[Member], inventory: Inventory | None
    ) -> tuple[Path, RootCause, Assessment]:
        """The live root cause of ``inc``'s ``members`` in ``inventory`` and its assessment (the GPUs other
        incidents' outages took counting as lost, ``_elsewhere``)."""
        path, root = live_root_cause(members, inventory)
        cost = self.config.assume_spare_capacity
        return path, root, assess(path, root, members, inventory, cost, elsewhere=self._elsewhere(inc))

    def _recompute(
        self,
        batch: Batch,
        inc: OpenIncident,
        assessed: tuple[Path, RootCause, Assessment] | None = None,
        *,
        settle: bool = False,
    ) -> None:
        """Root cause, impact and priority of one incident, written to its row; ``assessed``: already
        computed from its members and the current inventory (an inventory refresh decides on it first);
        ``settle``: not its alerts moved it but an inventory refresh (see ``_waits``)."""
        session, now = batch.session, batch.now
        row = session.get(IncidentRow, inc.id)
        assert row is not None
        members = list(inc.members.values())
        if not members:
            return
        if row.title and not any(m.firing or m.flapping for m in members):
            # Everything resolved: keep the peak impact and priority for the record, start the quiet period.
            self._start_quiet(batch, inc, row)
            return
        told: ToldAs = (told_of(row), row.quiet_since)
        path, root, assessment = assessed or self._assessed(inc, members, self.inventory)
        if settle and self._waits(inc, row, assessment, now):
            return
        inc.lower_since = None
        keep_reassessment(inc, row)
        inc.root_path = path
        inc.lost = assessment.lost
        self._set_workloads(inc, self._workloads_of(inc, assessment))
        was_shown = bool(row.title)  # assessed before: its impact and priority are its own
        shown_root_path, shown_root = self._shown_root(inc, row, path, root)
        new_target = target_to_dict(shown_root.target)
        if (
            row.root_kind != shown_root.kind.value or not same_target(row.root_target, new_target)
        ) and was_shown:
            label = target_label(
                shown_root.target,
                namespaced=shown_root.target in assessment.impact.namespaced,
                cluster=title_cluster(shown_root.target, shown_root_path, self.inventory),
            )
            # A move taken back: what it shows is weighed against what it showed before the move.
            told = (
                tell_root_moved(
                    batch,
                    inc.id,
                    f"root cause is now {fault_name(shown_root.kind)} on {label}",
                    {
                        "kind": shown_root.kind.value,
                        "target": new_target,
                    },
                    (row.root_kind, row.root_target, told),
                )
                or told
            )
        row.root_kind, row.root_target = shown_root.kind.value, new_target
        row.impact = with_peak(
            _impact_of(assessment), row.impact if was_shown else None, row.priority, assessment.priority.value
        )
        now_members = [m for m in members if m.fingerprint not in inc.earlier]  # of this opening
        row.title = _titled(
            shown_root_path, shown_root, members, assessment, self.inventory, opening=now_members
        )
        # Kept, not recomputed: a member that fires again has a later onset; the postmortem needs the first.
        row.first_onset_at = min(row.first_onset_at, *(m.onset for m in members))
        row.last_alert_at = inc.last_alert_at
        row.updated_at = now
        is_new = batch.is_new(inc.id)
        said = f"priority {assessment.priority.value}: {assessment.reason}"
        # A new incident states its priority once per reason: recomputed within its opening transaction (a
        # storm's merges), the same priority for the same reason is no second timeline entry.
        if row.priority != assessment.priority.value or (is_new and batch.priority_said.get(inc.id) != said):
            old = row.priority
            row.priority = assessment.priority.value
            inc.priority = assessment.priority
            batch.priority_said[inc.id] = said
            batch.event(
                inc.id,
                "priority",
                said,
                {
                    "from": None if is_new else old,
                    "to": assessment.priority.value,
                    "reason": assessment.reason,
                    # Told while a silence holds it: paged nobody (``reminders.paged``); its end pages.
                    **({"silenced": True} if not is_new and self._held(inc.id, batch.silence_time()) else {}),
                },
                change=None if is_new else ChangeKind.PRIORITY_CHANGED,
            )
        row.quiet_since = None
        if batch.has_change(inc.id):
            return
        if inc.id in batch.last_event:
            batch.changes.append((inc.id, ChangeKind.UPDATED, batch.last_event[inc.id]))
        elif told != (told_of(row), row.quiet_since) or self._recommends_else(batch, inc):
            tell_reassessed(batch, row, str(told[0][1]), recommended_by(inc.members.values()))
        # else nothing anyone sees changed (a flapping alert's flap, an error ratio within its tier): no
        # message edit per flap or per scrape

    def _assess_unshown(self, batch: Batch, inc: OpenIncident) -> None:
        """Root cause, impact, priority and title of an incident never assessed (merged away in the
        transaction that opened it), as its first assessment would have written them: the list and ``show``
        say what it was, not a blank P3. Nothing is told: it was never announced, and its merge says where
        it went."""
        row = batch.session.get(IncidentRow, inc.id)
        members = list(inc.members.values())
        if row is None or row.title or not members:
            return
        path, root, assessment = self._assessed(inc, members, self.inventory)
        row.root_kind, row.root_target = root.kind.value, target_to_dict(root.target)
        row.impact = with_peak(_impact_of(assessment), None, row.priority, assessment.priority.value)
        row.priority = assessment.priority.value
        row.title = _titled(path, root, members, assessment, self.inventory, opening=members)

    @staticmethod
    def _recommends_else(batch: Batch, inc: OpenIncident) -> bool:
        """Whether a repeat in ``batch`` changed what the incident's alerts recommend (``_remeasure``)."""
        before = batch.remeasured.get(inc.id)
        return before is not None and recommended_by(inc.members.values()) != before

    def _shown_root(
        self, inc: OpenIncident, row: IncidentRow, path: Path, root: RootCause
    ) -> tuple[Path, RootCause]:
        """The root cause people see, and its path: the one shown while what fires now lies within it
        (``kept_root``), else ``root`` at ``path``, the root of what fires. Not on the first assessment after
        a reopening or after alerts left it (``root_moved``): what it showed was the fault that ended, or
        theirs. Nor while every alert it holds fires: a shown root stands for a fault partly recovered, and
        with nothing recovered the root of what fires is the root of all it holds, as one POST of them finds
        it (an outage that came within NVLink errors shown names the incident: batch fuzz seed 2129)."""
        kept = None
        if row.title and not inc.root_moved:
            members = inc.members.values()
            kept = kept_root(row.root_kind, row.root_target, path, root, self.inventory, members=members)
            if kept is not None and kept[1] != root and all(m.firing or m.flapping for m in members):
                kept = None
        inc.root_moved = False
        return kept or (path, root)

    def _waits(self, inc: OpenIncident, row: IncidentRow, assessment: Assessment, now: datetime) -> bool:
        """Whether a less urgent assessment that an inventory refresh brought must wait: it applies once it
        held ``priority_settle_seconds``, so that unrelated churn (jobs starting and ending next to a stopped
        job, a node drained and resumed) does not swing the priority, and page again at each swing back. A
        more urgent one applies at once. One waiting since "after" ``now`` (the wall clock was set back since)
        waits from now, not the step longer."""
        if assessment.priority.value <= row.priority:  # "P0" < "P1": as urgent or more
            return False
        if inc.lower_since is None or inc.lower_since > now:
            inc.lower_since = now
            keep_reassessment(inc, row)
        return (now - inc.lower_since).total_seconds() < self.config.priority_settle_seconds

    def _settle_flapping(self, batch: Batch, inc: OpenIncident, row: IncidentRow) -> None:
        """Clear the flag of members that stopped changing state (the tick's check: a flapping alert that went
        quiet has no transition left to clear it), and start the quiet period if nothing fires any more."""
        stopped, now = False, batch.now.timestamp()
        # In fingerprint order, the events too: a restart reads the members in the store's order, not the
        # order they joined in.
        for fingerprint, member in sorted(inc.members.items()):
            if not member.flapping or now < member.settles_at <= now + self._flap.window_seconds:
                continue  # before ``settles_at`` its flag stays: no need to read its transitions
            alert = batch.session.get(AlertRow, fingerprint)
            if alert is None:
                continue
            kept, flapping = flap_state(self._flap, list(alert.transitions), now, False, True)
            if flapping and any(t > now for t in alert.transitions):  # the clock was set back since
                alert.transitions = kept  # as at now: it settles a window from now, not the step later
                member.settles_at = settles_after(self._flap, kept)
                inc.members[fingerprint] = member  # through ``Members``: the index files its new time
            if flapping:
                continue
            alert.transitions, alert.flapping, member.flapping = kept, False, False
            name = alert.labels.get("alertname", "")
            batch.event(
                inc.id, "flapping_stopped", f"alert {name} stopped flapping", {"fingerprint": fingerprint}
            )
            stopped = True
        if stopped and row.title and not any(m.firing or m.flapping for m in inc.members.values()):
            self._start_quiet(batch, inc, row)
        elif stopped and row.title:
            # Others still fire: what the settled one took (counted while it flapped) is given back.
            self._recompute(batch, inc)

    def _start_quiet(self, batch: Batch, inc: OpenIncident, row: IncidentRow) -> None:
        """Nothing of it fires any more (its last alert resolved, or its last flapping one settled): its root
        placed from all its members, as a restart places it (restart fuzz seed 1660: a settled flap left the
        root its live alert had), and its quiet period started."""
        self._place_root(inc)
        inc.lost = frozenset()  # nothing fires: it takes no capacity from anyone's share any more
        self._record_title(inc, row)
        row.updated_at = batch.now
        if row.quiet_since is None:
            row.quiet_since = batch.now
            batch.event(inc.id, "quiet", "all alerts resolved; waiting for the quiet period", {})
        if not batch.has_change(inc.id):
            batch.changes.append((inc.id, ChangeKind.UPDATED, batch.latest_event(inc.id)))

    def _record_title(self, inc: OpenIncident, row: IncidentRow) -> None:
        """The title once nothing fires: the root cause shown with the impact of all its alerts, what
        happened (the list and the postmortem show it), not that of the last alert to resolve. Left as it
        is where nothing had recovered before the end (the root of what fired last is the one shown, no
        progress): a flapping alert's flap changes no title."""
        members = list(inc.members.values())
        path, root = live_root_cause(members, self.inventory)  # of them all: none fires
        kept = kept_root(row.root_kind, row.root_target, path, root, self.inventory)
        if kept is None or (kept[0] == inc.root_path and without_progress(row.title) == row.title):
            row.title = without_progress(row.title)
            return
        # All of them as they were while they fired: the GPUs, nodes and workloads the fault took.
        fired = [replace(m, firing=True, flapping=False) for m in members]
        assessment = assess(*kept, fired, self.inventory, self.config.assume_spare_capacity)
        cluster = title_cluster(kept[1].target, kept[0], self.inventory)
        row.title = title(
            kept[1],
            assessment,
            seen(fired),
            placed=bool(kept[0]),
            cluster=cluster,
            workloads=carried(fired),
            series=degraded_series(fired),
        )

    def _order(self, incident_id: str) -> tuple[datetime, str]:
        """An open incident's place in the merge pass: earliest onset first (see ``first_onset``)."""
        return first_onset(self._open[incident_id].members.values(), incident_id)

    def _resolve_quiet(self, now: datetime, due: list[str]) -> Batch:
        """Resolve the open incidents quiet for the quiet period (their ids into ``due``); settle flapping.

        Only the incidents with no alert firing or flapping, or a flapping one that may settle, are looked at
        (``quiet_candidates``): every tick walked every open incident and read its row, 10,000 reads a tick
        with 10,000 incidents open (and under a stream where every alert flaps, every one still was)."""
        with self._sessions() as session, session.begin():
            batch = Batch(session, now, progress=self._lock.progress)  # the tick's (``engine_lock``)
            gave_back = []
            candidates = self._open.quiet_candidates(now.timestamp(), self._flap.window_seconds)
            rows = incident_rows(session, [inc.id for inc in candidates])
            for inc in candidates:
                batch.progress()
                row = rows.get(inc.id)
                if row is None:
                    continue
                if row.state == IncidentState.RESOLVED.value:  # resolved by a commit whose answer was lost
                    self._open.pop(inc.id, None)
                    continue
                lost = inc.lost
                self._settle_flapping(batch, inc, row)
                if inc.lost != lost:
                    gave_back.append((inc, lost))
                if row.quiet_since is not None and row.quiet_since > now:
                    row.quiet_since = now  # began "after" now: the clock was set back since; counted from now
                if row.quiet_since is None or now - row.quiet_since < self._quiet:
                    continue
                if any(m.firing or m.flapping for m in inc.members.values()):
                    continue
                close(batch, row, "resolved: all alerts quiet for the quiet period", {})
                due.append(inc.id)
            for inc, lost in gave_back:  # a flap that settled resolved: what it took is given back
                for other in self._sharers(inc, lost):
                    if other in self._open and other not in due:
                        self._recompute(batch, self._open[other])
        return batch


def incident_rows(session: Session, ids: list[str]) -> dict[str, IncidentRow]:
    """The rows of incidents ``ids``, read many at a time (not one query each; ``in_lists``)."""
    rows: dict[str, IncidentRow] = {}
    for chunk in in_lists(ids):
        rows.update(
            (row.id, row) for row in session.scalars(select(IncidentRow).where(IncidentRow.id.in_(chunk)))
        )
    return rows


def keep_reassessment(inc: OpenIncident, row: IncidentRow) -> None:
    """Store what inventory refreshes left pending of the incident (``OpenIncident.reassessment``): a
    restart carries on with it, not afresh."""
    pending = inc.reassessment(row.reopen_count)
    if row.reassessment != pending:
        row.reassessment = pending


def _titled(
    path: Path,
    root: RootCause,
    members: Sequence[Member],
    assessment: Assessment,
    inventory: Inventory | None,
    *,
    opening: Sequence[Member],
) -> str:
    """The title of the root cause people see (``root`` at ``path``), with what fires now and how much of it
    recovered: an incident's title does not narrow as parts of it come back (``rack r01 thermal; 5 of 6
    GPUs recovered``, not ``gpu r01-n03/1 thermal``). The recovery counted is of the ``opening`` members: a
    reopened incident's alerts of its earlier opening did not recover in this one."""
    shown = replace(assessment, root_down_now=root_down_now(path, root, members, inventory))
    cluster = title_cluster(root.target, path, inventory)
    named, series = carried(members), degraded_series(members)
    said = title(
        root, shown, seen(members), placed=bool(path), cluster=cluster, workloads=named, series=series
    )
    return said + progress(opening, path)


def _impact_of(assessment: Assessment) -> dict[str, Any]:
    """An assessment's impact as stored (``impact_to_dict``), with its shares, stopped jobs and reason."""
    return impact_to_dict(
        assessment.impact,
        shares=dict(assessment.shares),
        stopped_jobs=list(assessment.stopped_jobs),
        priority_reason=assessment.reason,
    )

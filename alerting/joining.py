"""Joining: where an alert that changed goes. A firing alert of an open incident updates its member there; a
new or re-firing one is muted, reopens the incident it belonged to (within the reopen window), joins the
open incident that best explains it (``alerting.correlation``), or opens a new incident.

``IncidentJoining`` is the part of ``IncidentEngine`` that does it, inside the transaction's ``Batch``;
``alerting.grouping`` then recomputes and merges the incidents it touched.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Container, Mapping
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerting.batch import Batch, IngestResult, OpenIncident
from alerting.correlation import Candidate, best_candidate, foreign
from alerting.faults import OUTAGE_KINDS, SYMPTOM_KINDS, classify
from alerting.flapping import repeats_reopening, settles_after
from alerting.grouping import IncidentGrouping
from alerting.heading import head_root, held_outage
from alerting.impact import live_root_cause, workloads_hit
from alerting.ingest_session import add_opened
from alerting.lateness import existed_then
from alerting.member import Member, live
from alerting.member import describe as _describe
from alerting.merging import took_earlier
from alerting.muting import MuteTracking
from alerting.pending import StoredAlert
from alerting.recurrence import LatestResolved, RecentlyResolved
from alerting.reminders import held_text, reminder_due
from alerting.reminding import stored_pages
from alerting.root_cause import kept_root, root_cause
from alerting.root_facts import beside_held, recurs
from alerting.store import ALERT_MOVED
from alerting.store_models import AlertRow, IncidentRow, TimelineRow
from alerting.subscriptions import ChangeKind
from alerting.titles import root_cluster
from alerting.topology import locate, target_from_dict, target_label, target_to_dict
from gpuwarden.model import AlertStatus, FaultKind, IncidentState, Priority, add_workloads

# Root kinds whose fault an outage within them comes back as (``IncidentJoining._reopen``).
_WIDE_OUTAGES = frozenset({FaultKind.RACK_DOWN.value, FaultKind.NODE_DOWN.value})


class IncidentJoining(IncidentGrouping, MuteTracking):
    """Puts alerts that changed into incidents; mixed into ``IncidentEngine``."""

    counters: dict[str, int]
    _reopen_within: timedelta
    _latest_resolved: LatestResolved  # when the latest incident resolved (``alerting.recurrence``)
    _cycling_within: float  # ``alerting.cycling_reopens_seconds``
    _remind_after: float  # ``alerting.remind_after_seconds``
    _remind_from: Callable[[str, datetime], None]  # ``alerting.reminding.SteadyReminding``'s
    _page_read: Callable[[str, datetime, datetime], datetime]  # its too
    _hold: timedelta  # ``alerting.announce_delay_seconds``

    def _member(self, row: StoredAlert) -> Member:
        """A stored alert as correlation sees it (its kind and place from its labels and the inventory)."""
        kind = classify(row.labels)
        return Member(
            fingerprint=row.fingerprint,
            kind=kind,
            location=locate(row.labels, kind, self.inventory),
            onset=row.starts_at,
            firing=row.status == AlertStatus.FIRING,
            labels=row.labels,
            flapping=row.flapping,
            settles_at=self._settles_at(row),
            recommended_action=row.recommended_action,
            annotations=row.annotations,
        )

    def _refreshed(self, inc: OpenIncident, row: StoredAlert, firing: bool) -> Member:
        """The incident's member for ``row``, brought up to what the alert says now."""
        member = inc.members.get(row.fingerprint) or self._member(row)
        if firing:
            inc.earlier.discard(row.fingerprint)  # of this opening now
        member.firing, member.flapping, member.onset = firing, row.flapping, row.starts_at
        member.settles_at = self._settles_at(row)
        # A re-fire carries what the alert says now (its error ratio, what it recommends).
        member.annotations, member.recommended_action = row.annotations, row.recommended_action
        inc.members[row.fingerprint] = member
        return member

    def _settles_at(self, row: StoredAlert) -> float:
        """When the alert, if flapping, may settle with no new change (``flapping.settles_after``)."""
        return settles_after(self._flap, row.transitions) if row.flapping else float("-inf")

    def _apply(
        self, batch: Batch, row: StoredAlert, status: AlertStatus, was_flapping: bool, res: IngestResult
    ) -> None:
        now = batch.now
        firing = status is AlertStatus.FIRING
        row.muted_by = self._mute_reason(row, batch.silence_time()) if firing else row.muted_by
        inc = self._open.get(row.incident_id) if row.incident_id else None
        if inc is not None:
            member = self._refreshed(inc, row, firing)
            if row.flapping != was_flapping:
                _flapping_event(batch, inc.id, row)
            if not row.flapping:
                key = f"{inc.id}\0alert_{status.value}"
                batch.added.setdefault(key, []).append(
                    (row.fingerprint, _describe(row.labels), member.kind.value)
                )
            batch.touched.add(inc.id)
            return
        if not firing:
            return
        if row.muted_by is not None:
            res.muted += 1
            return
        if row.incident_id is not None and self._reopen(batch, row):
            if row.flapping != was_flapping:  # the flap that crossed the threshold: on its timeline too
                _flapping_event(batch, row.incident_id, row)
            return
        member = self._member(row)
        horizon = now - self._window
        # An alert placed in a cluster that is not a workload symptom can only join incidents of its own
        # cluster or without a topology root: ``foreign`` says so; this inline test skips the others
        # without a call each (ingest asks every open incident for each new alert).
        path = member.location.path
        cluster = (
            path[0] if path and not (member.kind in SYMPTOM_KINDS and member.location.workloads) else None
        )
        candidates = [
            o.candidate()
            for o in self._open.join_candidates(member, self.inventory)
            if (cluster is None or not o.root_path or o.root_path[0] == cluster)
            and not foreign(o.root_path, o.workloads, member)
            and _may_take(o, member, horizon)
        ]
        candidates = existed_then(batch, candidates, member, self.inventory)  # posted late: as in onset order
        chosen = best_candidate(candidates, member, self.inventory)
        if chosen is not None and member.is_infra and not chosen.root_path:
            chosen = self._past_taken(candidates, chosen, member)
        if chosen is None and member.is_infra and self._reopen_recurring(batch, row, member):
            return
        if chosen is None:
            inc = self._open_incident(batch, member)
            res.opened.append(inc.id)
        else:
            inc = self._open[chosen.id]
            self._fault_joins(batch, inc, row, member)
        early = self._head(inc, member, candidates, joined=chosen is not None)
        # And those on its GPUs, as the batch's assessment will count them: the next alert of this batch
        # sees them (a service's latency alert joins the XID on its GPU posted just before it).
        found = member.location.workloads | workloads_hit(member, self.inventory)
        if not found <= inc.workloads:
            # It may take a rootless incident sharing one, or be taken by a rooted one (2537, 3657).
            early = early or not inc.root_path or self._open.rootless_sharing(found - inc.workloads)
            self._set_workloads(inc, add_workloads(inc.workloads, found))
        inc.last_alert_at = now
        row.incident_id = inc.id
        batch.came(inc.id, member.onset)
        key = f"{inc.id}\0alert_added"
        added = batch.added.get(key)  # not setdefault: it would make a list per alert
        if added is None:
            added = batch.added[key] = []
        added.append((row.fingerprint, _describe(row.labels), member.kind.value))
        batch.touched.add(inc.id)
        if batch.in_onset_order(member.onset) and early:
            self._merge_early(batch, inc)  # what the rest of the POST sees, as posted after it

    def _head(self, inc: OpenIncident, member: Member, candidates: list[Candidate], *, joined: bool) -> bool:
        """Add ``member`` to ``inc`` (which it opened, or ``joined``), its root headed where the recompute
        will put it; whether the merge pass of ``inc`` runs at once (``_merge_early``): it opened ``inc``,
        moved its root or is its first outage."""
        had_outage = joined and member.is_infra and held_outage(inc)
        inc.members[member.fingerprint] = member
        root = inc.root_path
        if joined and member.is_infra:
            # Where the recompute will root it: the next alert of this batch sees it (``alerting.heading``).
            head_root(inc, member, candidates, self.inventory, had_outage=had_outage)
        return not joined or inc.root_path != root or (member.is_outage and not had_outage)

    def _past_taken(self, candidates: list[Candidate], chosen: Candidate, member: Member) -> Candidate | None:
        """The incident the fault ``member`` joins when the best, ``chosen``, has no root and an incident with
        a root would take it in now (``_rooted_taker``: they came to share a workload in this transaction):
        the best of the others. Posted in a later POST, the merge pass had put it into that incident, whose
        root does not take a fault merely for running on a node of the workload; in one POST the fault
        joined it first and went along (batch fuzz seeds 201, 1113, 2254, 3745 and more alike)."""
        best: Candidate | None = chosen
        while best is not None and not best.root_path and self._rooted_taker(self._open[best.id]):
            candidates = [c for c in candidates if c.id != best.id]
            best = best_candidate(candidates, member, self.inventory)
        return best

    def _open_incident(self, batch: Batch, member: Member) -> OpenIncident:
        now = batch.now
        path, root = root_cause([member], self.inventory)
        inc = OpenIncident(f"inc-{uuid.uuid4().hex[:12]}", path, Priority.P3, IncidentState.TRIGGERED, now)
        self._open[inc.id] = inc
        self._remind_from(inc.id, now)
        add_opened(
            batch.session,
            IncidentRow(
                id=inc.id,
                title="",
                priority=Priority.P3.value,
                state=IncidentState.TRIGGERED.value,
                root_kind=root.kind.value,
                root_target=target_to_dict(root.target),
                opened_at=now,
                last_opened_at=now,
                updated_at=now,
                last_alert_at=now,
                first_onset_at=member.onset,
                quiet_since=None,
                acknowledged_at=None,
                acknowledged_by=None,
                resolved_at=None,
                merged_into=None,
                impact={},
                actions=[],
                reopen_count=0,
            ),
        )
        batch.event(inc.id, "opened", "incident opened", {}, change=ChangeKind.OPENED)
        self.counters["incidents_opened"] += 1
        return inc

    def _reopen_recurring(self, batch: Batch, row: StoredAlert, member: Member) -> bool:
        """Reopen the incident resolved within the reopen window whose fault ``member`` is, coming back
        through another alert (a node down again whose GPUs' alerts fire before NodeDown does): among those
        it recurs in (``recurs``), the one the join rules pick as if it were open. False when none; asked
        only of an infrastructure alert that would open a new incident. One a silence still holds is
        reopened only by its own fault, not one beside it (``beside_held``: another GPU of its node lost)."""
        if batch.resolved is None:
            since = batch.now - self._reopen_within
            batch.resolved = RecentlyResolved(
                batch.session, since, self._member, self._load_resolved, self._latest_resolved
            )
        candidates = [
            c
            for c in (p.candidate() for p in batch.resolved.near(member.location.path, batch.now))
            if c.id not in self._open
            and not foreign(c.root_path, c.workloads, member)
            and recurs(c.root_path, c.members, c.facts, member)
        ]
        chosen = best_candidate(candidates, member, self.inventory)
        if chosen is None:
            return False
        row.incident_id = chosen.id
        beside = self._held(chosen.id, batch.silence_time()) and beside_held(
            chosen.root_path, chosen.facts, [member]
        )
        held = list(chosen.members) if beside else []  # what the silence held, before this alert joins
        reopened = self._reopen(batch, row, explained=True)
        if reopened and beside:  # what else comes in beside it in this transaction is named in its end too
            reopening = batch.last_event[chosen.id]  # why the silence ends, not what it held back
            self._lift_early(
                batch, chosen.id, _beside(row), root=chosen.root_path, members=held, cause=reopening
            )
        return reopened

    def _fault_joins(self, batch: Batch, inc: OpenIncident, row: StoredAlert, member: Member) -> None:
        """End the silence of the incident ``member`` joins when it is a fault beside the one the silence was
        set for (``beside_held``, the rule of merges and regroupings too): another GPU of its node lost pages,
        in the node's one incident. One this transaction ended already for another says this one too. One
        without a root is marked (``Batch.rooted``): what it took as evidence may be strays now."""
        if member.is_infra:
            self._end_if_beside(batch, inc, [member], lambda: _beside(row))
            if not inc.root_path:
                batch.rooted.add(inc.id)

    def _load_resolved(self, past: OpenIncident) -> None:
        """A resolved incident's root path and workloads, from its members, as an open one's."""
        past.root_path, _ = live_root_cause(past.members.values(), self.inventory)
        self._set_workloads(past, self._workloads_of(past, None))

    def _join_open(self, batch: Batch, inc: OpenIncident, row: StoredAlert) -> None:
        """A firing alert that named an incident merged into ``inc`` joins it, on its timeline as a join
        (``alert_added``) or, already a member, as a re-fire (``alert_firing``, none while it flaps)."""
        kind = "alert_firing" if row.fingerprint in inc.members else "alert_added"
        member = self._refreshed(inc, row, True)
        if not member.location.workloads <= inc.workloads:
            self._set_workloads(inc, add_workloads(inc.workloads, member.location.workloads))
        inc.last_alert_at = batch.now
        if kind == "alert_added" or not row.flapping:
            batch.added.setdefault(f"{inc.id}\0{kind}", []).append(
                (row.fingerprint, _describe(row.labels), member.kind.value)
            )
        batch.touched.add(inc.id)

    def _reopen(self, batch: Batch, row: StoredAlert, *, explained: bool = False) -> bool:
        """Bring the alert's incident back (False when the incident is no longer stored); ``explained``: the
        alert is new to it, its root cause explains it."""
        assert row.incident_id is not None
        inc_row = batch.session.get(IncidentRow, row.incident_id)
        if inc_row is None:
            row.incident_id = None
            return False
        target = inc_row
        while target.merged_into is not None:
            nxt = batch.session.get(IncidentRow, target.merged_into)
            if nxt is None:
                break
            target = nxt
        if (
            target.id not in self._open
            and target.resolved_at is not None
            and batch.now - target.resolved_at > self._reopen_within
        ):
            # Long resolved: a recurrence now is a new incident. The old one keeps what it saw of the alert.
            starts, ends, annotations, action = batch.spans.get(
                row.fingerprint, (row.starts_at, row.ends_at, {}, row.recommended_action)
            )
            batch.event(
                target.id,
                ALERT_MOVED,
                f"{_describe(row.labels)} fired again after the reopen window: a new incident takes it",
                {
                    "fingerprint": row.fingerprint,
                    "labels": dict(row.labels),
                    "annotations": annotations,
                    "starts_at": starts.isoformat(),
                    "ends_at": ends.isoformat() if ends is not None else None,
                    "recommended_action": action,
                },
            )
            row.incident_id = None
            return False
        row.incident_id = target.id
        if target.id in self._open:  # it named an incident merged into this open one: it joins, and says so
            self._join_open(batch, self._open[target.id], row)
            return True
        target.state = IncidentState.TRIGGERED.value
        target.resolved_at = target.quiet_since = None
        target.reopen_count += 1
        target.last_opened_at = batch.now  # newest first in listings again
        inc = OpenIncident(target.id, (), Priority(target.priority), IncidentState.TRIGGERED, batch.now)
        for alert in batch.session.scalars(select(AlertRow).where(AlertRow.incident_id == target.id)):
            inc.members[alert.fingerprint] = self._member(alert)
            if alert.status != AlertStatus.FIRING.value:
                inc.earlier.add(alert.fingerprint)
        inc.members[row.fingerprint] = member = self._member(row)
        inc.earlier.discard(row.fingerprint)
        # Where its root is now, until the batch recomputes it: the next alert of this batch sees it. The
        # root it showed was the fault that ended (``root_moved``), unless an outage (a node down, a GPU
        # lost or hung) comes back within a node or rack it saw go down: that fault partly back ("rack r07
        # lost power, partly back"), as the open incident kept it while that node stayed down.
        path, live = live_root_cause(inc.members.values(), self.inventory)
        kept = None
        if member.kind in OUTAGE_KINDS and target.root_kind in _WIDE_OUTAGES:
            kept = kept_root(target.root_kind, target.root_target, path, live, self.inventory)
        inc.root_path = kept[0] if kept is not None else path
        inc.root_moved = kept is None
        self._set_workloads(inc, self._workloads_of(inc, None))
        self._open[target.id] = inc
        self._remind_from(target.id, target.opened_at)
        self._reopened_event(batch, target, row, explained)
        self._track_reopened(batch, target.id)  # open when its silence ended: it catches up on it
        batch.touched.add(target.id)
        return True

    def _reopened_event(self, batch: Batch, target: IncidentRow, row: StoredAlert, explained: bool) -> None:
        """The ``reopened`` event of ``target``, which alert ``row`` brought back (see ``_reopen``)."""
        # A flapping alert's re-fire (the one that made it flapping) is held: the incident stays open while
        # it flaps, its message says so, and nobody is paged for each flap (Alertmanager pages for none).
        # So is a reopening that only repeats the incident's slower resolve / reopen cycle (``_cycling``).
        # Either is still a reopening (a webhook's ticket opens again); the event's "flapping" or "cycling"
        # says it is held: decided here, stored with the event, so a restarted serve tells it alike. Held,
        # it pages all the same as a reminder once the incident's last page is old (``_reminder``).
        cycling = 0 if row.flapping else self._cycling(batch, target.id, row.fingerprint)
        reminder = self._reminder(batch, target) if row.flapping or cycling else None
        held = held_text(row.flapping, cycling, self._cycling_within, reminder)
        root = target_from_dict(target.root_target)
        label = target_label(root, cluster=root_cluster(root, self.inventory))  # a GPU's: its node's
        fired = f"fired, which its root cause {label} explains"
        data: dict[str, object] = {"fingerprint": row.fingerprint, "flapping": row.flapping}
        if cycling:
            data["cycling"] = cycling
        if reminder is not None:
            data["reminder"] = reminder
        batch.event(
            target.id,
            "reopened",
            f"reopened: {_describe(row.labels)} {fired if explained else 'fired again'}{held}",
            data,
            change=ChangeKind.REOPENED,
        )

    def _cycling(self, batch: Batch, incident_id: str, fingerprint: str) -> int:
        """How often the incident reopened within ``alerting.cycling_reopens_seconds``, this reopening by
        alert ``fingerprint`` included, when it only repeats that cycle (``flapping.repeats_reopening``);
        0 when it pages. From the stored timeline: a restarted serve decides alike."""
        window = self._cycling_within
        if window <= 0:
            return 0
        events = batch.session.execute(
            select(TimelineRow.kind, TimelineRow.at, TimelineRow.data).where(
                TimelineRow.incident_id == incident_id,
                TimelineRow.at >= batch.now - timedelta(seconds=window),
                TimelineRow.kind.in_(_FIRED),
            )
        )
        earlier = [(kind, at.timestamp(), frozenset(_named(data))) for kind, at, data in events]
        return repeats_reopening(fingerprint, earlier, batch.now.timestamp(), window)

    def _reminder(self, batch: Batch, target: IncidentRow) -> float | None:
        """How long ago the incident last paged, when its held reopening now pages as a reminder
        (``alerting.reminders.reminder_due``: ``alerting.remind_after_seconds`` or longer, nobody took it up
        since); None when it stays held, or a silence holds the incident (it pages nobody anyway). From the
        stored timeline, newest first, as far back as its last page: a restarted serve decides alike."""
        if self._remind_after <= 0 or self._held(target.id, batch.silence_time()):
            return None
        hold = self._hold.total_seconds()
        events = stored_pages(batch.session, [target.id], hold).get(target.id, [])
        now = batch.now
        counted = lambda last: self._page_read(target.id, last, now)  # noqa: E731 - one stored ahead: as now
        return reminder_due(events, now, self._remind_after, target.opened_at, hold, counted=counted)


def _may_take(inc: OpenIncident, new: Member, horizon: datetime) -> bool:
    """Whether open ``inc`` may take the new alert ``new`` (then the join rules rank it).

    One with an alert firing or flapping may. One whose alerts all resolved (waiting out its quiet period)
    may only within the correlation window (``horizon`` on), and only its fault coming back (``recurs``), as
    it would reopen had it resolved: its root explained what was on its node while it fired; now another
    fault there is new, has its own incident and pages. A silence changes nothing here: one fault is one
    incident, silenced or not; a fault beside the one the silence was set for (an XID on another GPU of its
    node) joins it and ends the silence (``IncidentJoining._fault_joins``), so it pages."""
    return live(inc.members) or (
        inc.last_alert_at >= horizon and recurs(inc.root_path, inc.members.values(), inc.facts, new)
    )


def _beside(row: StoredAlert) -> str:
    """Why a joining alert ends its incident's silence."""
    return f"{_describe(row.labels)} fired, a fault beside the one the silence was set for"


_FIRED = ("reopened", "alert_added", "alert_firing")  # timeline kinds naming alerts that fired then
# Kinds naming alerts that fired or resolved then, so of the opening then (``earlier_members``). A flapping
# alert's changes are no events but the one that made it flapping (a tick, not a change, ends that).
_CHANGED = (*_FIRED, "alert_resolved", "flapping_started")
_CAME = ("merged", "alerts_moved")  # kinds naming alerts another incident handed over (its "from" side)


def earlier_members(
    session: Session, row: IncidentRow, members: Mapping[str, Member], took: Container[str] | None = None
) -> set[str]:
    """The members of an incident (as the store has it) that are of an earlier opening
    (``OpenIncident.earlier``), replayed from its timeline as the live engine kept them: at a reopening
    every resolved one; since then, one that fired or resolved (it fired in this opening: muted when it
    reopened, say), started flapping (its changes since are no events), or that a merge or a regrouping
    brought as of the giving incident's opening, is of this one; one a merge brought as of an earlier
    opening of the incident it left stays earlier (``IncidentMerging._fold``). Only resolved members
    count. ``took``: those of the incidents that took such alerts (``took_earlier``), read for all at once."""
    resolved = {fp for fp, m in members.items() if not m.firing}
    if not resolved:
        return set()
    reopened = row.last_opened_at is not None and row.last_opened_at > row.opened_at
    if not reopened and row.id not in (took_earlier(session, [row.id]) if took is None else took):
        return set()  # nearly every incident: not one more read of its timeline at each start
    since = TimelineRow.seq >= 0
    if reopened:
        # From the reopening on, by its place in the timeline, not its time: a merge in the same instant
        # before it (an absorbed incident's resolved alerts) brought alerts that the reopening made earlier.
        last = session.scalar(
            select(func.max(TimelineRow.seq)).where(
                TimelineRow.incident_id == row.id, TimelineRow.kind == "reopened"
            )
        )
        since = TimelineRow.seq >= last if last is not None else TimelineRow.at >= row.last_opened_at
    events = session.execute(
        select(TimelineRow.kind, TimelineRow.data)
        .where(TimelineRow.incident_id == row.id, since, TimelineRow.kind.in_(_CHANGED + _CAME))
        .order_by(TimelineRow.seq)
    )
    earlier = set(resolved) if reopened else set()
    for kind, data in events:
        if kind in _CAME and "from" not in data:
            continue  # the giving side's event
        # A merge stored before its event named alerts names none: those stay earlier, as they did.
        earlier -= _named(data)
        earlier |= {str(fp) for fp in data.get("earlier", ())}
    return earlier & resolved


def _named(data: Mapping[str, object]) -> set[str]:
    """The fingerprints of the alerts a timeline event's data names (one, or a list)."""
    listed = data.get("fingerprints", ())
    named = [data.get("fingerprint"), *(listed if isinstance(listed, list | tuple) else ())]
    return {str(fp) for fp in named if fp is not None}


def _flapping_event(batch: Batch, incident_id: str, row: StoredAlert) -> None:
    """The incident's timeline says the alert started (or stopped) flapping."""
    verb = "started" if row.flapping else "stopped"
    batch.event(
        incident_id,
        f"flapping_{verb}",
        f"alert {row.labels.get('alertname', '')} {verb} flapping",
        {"fingerprint": row.fingerprint},
    )

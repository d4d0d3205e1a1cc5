"""The incident engine: dedup → mute → flap → correlate → prioritise → store → tell listeners.

One writer: every change runs under a lock in one transaction, and listeners are called only after the
commit. An in-memory view of open incidents (rebuilt from the store at start) keeps correlation cheap.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.correlation import Candidate, Member, best_candidate, foreign, placement, root_cause
from alerting.faults import SYMPTOM_KINDS, classify
from alerting.flapping import FlapPolicy, flap_state
from alerting.impact import Assessment, assess, seen, title
from alerting.inhibition import Inhibitor, InhibitRule
from alerting.inventory import GpuKey, Inventory
from alerting.matchers import Matcher, parse_matcher
from alerting.pending import (
    FingerprintCache,
    PendingAlert,
    Repeat,
    StoredAlert,
    insert_pending,
    update_repeats,
)
from alerting.postmortem import render_postmortem
from alerting.silences import Silence, SilenceKind, muting_silence
from alerting.store import IncidentNotFound, IncidentStore, impact_to_dict, silence_from_row
from alerting.store_models import AlertRow, IncidentRow, SilenceRow, TimelineRow
from alerting.subscriptions import ChangeKind, IncidentChange, IncidentListener
from alerting.topology import Path, contains, locate, target_to_dict
from gpuwarden.clock import Clock
from gpuwarden.config import AlertingConfig
from gpuwarden.errors import InputError
from gpuwarden.model import Alert, AlertStatus, Incident, IncidentState, Priority, WorkloadRef

logger = logging.getLogger(__name__)


@dataclass
class _Open:
    """An open incident as the engine keeps it in memory."""

    id: str
    root_path: Path
    priority: Priority
    state: IncidentState
    last_alert_at: datetime
    members: dict[str, Member] = field(default_factory=dict)
    workloads: frozenset[WorkloadRef] = frozenset()
    placed: frozenset[GpuKey] = frozenset()  # GPUs of ``workloads`` per the inventory; set with them

    def candidate(self) -> Candidate:
        # A live view of the members, not a copy: ingest asks every open incident for each new alert.
        return Candidate(
            self.id, self.root_path, self.workloads, self.members.values(), self.last_alert_at, self.placed
        )


@dataclass
class IngestResult:
    """What one ingest call did."""

    accepted: int = 0
    opened: list[str] = field(default_factory=list)
    muted: int = 0


@dataclass
class _Ticket:
    """One ingest call waiting for the group commit."""

    alerts: list[Alert]
    result: IngestResult = field(default_factory=IngestResult)
    done: bool = False
    error: Exception | None = None
    at: datetime | None = None  # when the batch was accepted (journal replay); None: now


@dataclass
class _Batch:
    """Pending effects of one transaction."""

    session: Session
    now: datetime
    touched: set[str] = field(default_factory=set)
    changes: list[tuple[str, ChangeKind, TimelineRow]] = field(default_factory=list)
    last_event: dict[str, TimelineRow] = field(default_factory=dict)
    added: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    rows: dict[str, StoredAlert] = field(default_factory=dict)
    new: list[PendingAlert] = field(default_factory=list)


class IncidentEngine:
    """Turns alerts into incidents; implements ``IncidentActions`` for Slack and the API."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        config: AlertingConfig | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        self.config = config or AlertingConfig()
        self.clock = clock
        self.inventory = inventory
        self.store = IncidentStore(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._lock = threading.RLock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Ticket] = []
        self._listeners: list[IncidentListener] = []
        self._flap = FlapPolicy(
            self.config.flap_window_seconds,
            self.config.flap_start_transitions,
            self.config.flap_stop_transitions,
        )
        self._window = timedelta(seconds=self.config.correlation_window_seconds)
        self._quiet = timedelta(seconds=self.config.quiet_period_seconds)
        rules = [
            InhibitRule(
                tuple(parse_matcher(m) for m in r.source_matchers),
                tuple(parse_matcher(m) for m in r.target_matchers),
                tuple(r.equal),
                r.name,
            )
            for r in self.config.inhibit_rules
        ]
        self._inhibitor = Inhibitor(rules)
        self._silences: list[Silence] = [
            Silence(
                id=f"maintenance-{i}",
                matchers=tuple(parse_matcher(m) for m in w.matchers),
                starts_at=w.starts_at,
                ends_at=w.ends_at,
                created_by="config",
                comment=w.comment,
                kind=SilenceKind.MAINTENANCE,
            )
            for i, w in enumerate(self.config.maintenance_windows)
        ]
        self._open: dict[str, _Open] = {}
        # Status of every stored alert by fingerprint: tells a repeat from a change without a query.
        self._status: dict[str, str] = {}
        self._fingerprints = FingerprintCache()
        self._hold = timedelta(seconds=self.config.announce_delay_seconds)
        self._unannounced: dict[str, datetime] = {}
        self.counters: dict[str, int] = {
            "alerts_received": 0,
            "alerts_muted": 0,
            "incidents_opened": 0,
            "incidents_resolved": 0,
            "listener_errors": 0,
        }
        self._reload()

    # --- subscriptions --------------------------------------------------------------------------

    def subscribe(self, listener: IncidentListener) -> None:
        """Call ``listener`` after each committed change."""
        with self._lock:
            self._listeners.append(listener)

    def _notify(self, changes: Sequence[tuple[str, ChangeKind, TimelineRow]]) -> None:
        """Tell listeners, holding back new incidents for the announce delay (like Alertmanager's group_wait).

        An incident merged or resolved before its announcement is never announced; changes of a held
        incident fold into its announcement.
        """
        out: list[tuple[str, ChangeKind, TimelineRow]] = []
        for incident_id, kind, event in changes:
            if kind is ChangeKind.OPENED and self._hold > timedelta(0):
                self._unannounced[incident_id] = event.at
            elif incident_id in self._unannounced:
                if kind is ChangeKind.RESOLVED:
                    del self._unannounced[incident_id]
            else:
                out.append((incident_id, kind, event))
        self._emit(out)

    def _emit(self, changes: Sequence[tuple[str, ChangeKind, TimelineRow]]) -> None:
        if not self._listeners or not changes:
            return
        cache: dict[str, Incident] = {}
        for incident_id, kind, event in changes:
            if incident_id not in cache:
                cache[incident_id] = self.store.get(incident_id)
            incident = cache[incident_id]
            match = next((e for e in incident.timeline if e.at == event.at and e.kind == event.kind), None)
            self._call_listeners(IncidentChange(kind, incident, match or incident.timeline[-1]))

    def _call_listeners(self, change: IncidentChange) -> None:
        for listener in list(self._listeners):
            try:
                listener(change)
            except Exception:  # loop boundary: a listener must never break ingest
                self.counters["listener_errors"] += 1
                logger.exception("incident listener failed", extra={"incident_id": change.incident.id})

    def _announce_due(self, now: datetime) -> None:
        """Announce held incidents whose delay has passed, as they are now."""
        due = [i for i, at in self._unannounced.items() if now - at >= self._hold]
        for incident_id in due:
            del self._unannounced[incident_id]
            if not self._listeners:
                continue
            incident = self.store.get(incident_id)
            if incident.state is IncidentState.RESOLVED:
                continue
            opened = next((e for e in incident.timeline if e.kind == "opened"), incident.timeline[0])
            self._call_listeners(IncidentChange(ChangeKind.OPENED, incident, opened))

    # --- state rebuild --------------------------------------------------------------------------

    def _member(self, row: StoredAlert) -> Member:
        kind = classify(row.labels)
        return Member(
            fingerprint=row.fingerprint,
            kind=kind,
            location=locate(row.labels, kind, self.inventory),
            onset=row.starts_at,
            firing=row.status == AlertStatus.FIRING,
            labels=row.labels,
            flapping=row.flapping,
        )

    def _reload(self) -> None:
        """Rebuild the in-memory view from the store (at start, and after a failed transaction)."""
        with self._lock, self._sessions() as session:
            self._open.clear()
            self._inhibitor = Inhibitor(self._inhibitor.rules)
            rows = session.scalars(
                select(IncidentRow).where(
                    IncidentRow.state != IncidentState.RESOLVED.value, IncidentRow.merged_into.is_(None)
                )
            ).all()
            for row in rows:
                # A crash may have come between opening and announcing: announce again (listeners such
                # as the outbox dedupe by the event's idempotency key).
                self._unannounced[row.id] = row.opened_at
                self._open[row.id] = _Open(
                    row.id, (), Priority(row.priority), IncidentState(row.state), row.last_alert_at
                )
            self._status = {
                fp: st for fp, st in session.execute(select(AlertRow.fingerprint, AlertRow.status))
            }
            for alert in session.scalars(select(AlertRow).where(AlertRow.status == AlertStatus.FIRING.value)):
                self._inhibitor.update(alert.fingerprint, alert.labels, True)
            if self._open:
                for alert in session.scalars(
                    select(AlertRow).where(AlertRow.incident_id.in_(list(self._open)))
                ):
                    assert alert.incident_id is not None
                    self._open[alert.incident_id].members[alert.fingerprint] = self._member(alert)
            for inc in self._open.values():
                if inc.members:
                    inc.root_path, _ = root_cause(inc.members.values(), self.inventory)
                    self._set_workloads(inc, self._workloads_of(inc, None))
            now = self.clock.now()
            configured = [
                s for s in self._silences if s.kind is SilenceKind.MAINTENANCE and s.created_by == "config"
            ]
            stored = session.scalars(select(SilenceRow).where(SilenceRow.ends_at > now)).all()
            self._silences = configured + [silence_from_row(r) for r in stored]

    def _workloads_of(self, inc: _Open, assessment: Assessment | None) -> frozenset[WorkloadRef]:
        found: set[WorkloadRef] = set()
        for m in inc.members.values():
            found |= m.location.workloads
        if assessment is not None:
            found |= set(assessment.impact.workloads)
        return frozenset(found)

    # --- ingest ---------------------------------------------------------------------------------

    def _set_workloads(self, inc: _Open, workloads: frozenset[WorkloadRef]) -> None:
        if workloads != inc.workloads:
            inc.workloads, inc.placed = workloads, placement(workloads, self.inventory)

    def ingest(self, alerts: Sequence[Alert]) -> IngestResult:
        """Store and process alerts; returns after they are committed.

        Group commit: calls that arrive while another is being written wait, and the next writer takes
        all of them in one transaction, so concurrent requests share one fsync and one recompute.
        """
        ticket = _Ticket(list(alerts))
        with self._queue_lock:
            self._queue.append(ticket)
        with self._lock:
            if not ticket.done:
                with self._queue_lock:
                    tickets, self._queue = self._queue, []
                self._write(tickets)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def apply_accepted(
        self,
        batches: Sequence[tuple[datetime, Sequence[Alert]]],
        in_transaction: Callable[[Session], None],
    ) -> IngestResult:
        """Apply batches accepted earlier (the journal), each at its own accept time, in ONE transaction.

        ``in_transaction`` runs inside it (the journal commits its applied offset there), so the alerts
        and the offset are stored together or not at all. Raises what the transaction raised.
        """
        tickets = [_Ticket(list(alerts), at=at) for at, alerts in batches]
        with self._lock:
            self._write(tickets, in_transaction)
        total = IngestResult()
        for ticket in tickets:
            if ticket.error is not None:
                raise ticket.error
            total.accepted += ticket.result.accepted
            total.muted += ticket.result.muted
            total.opened.extend(ticket.result.opened)
        return total

    def _write(self, tickets: list[_Ticket], in_transaction: Callable[[Session], None] | None = None) -> None:
        now = self.clock.now()
        times = [t.at for t in tickets if t.at is not None]
        if times:
            now = max(times)
        status_after: dict[str, str] = {}
        try:
            with self._sessions() as session, session.begin(), session.no_autoflush:
                batch = _Batch(session, now)
                slow: list[tuple[Alert, str, AlertStatus, IngestResult, datetime]] = []
                slow_fps: set[str] = set()
                repeats: list[Repeat] = []
                fps = iter(self._fingerprints.fingerprint_all([a.labels for t in tickets for a in t.alerts]))
                for ticket in tickets:
                    at = ticket.at or now
                    for alert in ticket.alerts:
                        fp = next(fps)
                        status = _status_of(alert, at)
                        ticket.result.accepted += 1
                        if fp not in slow_fps and self._status.get(fp) == status.value:
                            # Fast path: a repeat with nothing changed (Prometheus re-posts firing alerts).
                            repeats.append(Repeat(fp, alert.ends_at, dict(alert.annotations), alert.score))
                        else:
                            slow_fps.add(fp)
                            slow.append((alert, fp, status, ticket.result, at))
                update_repeats(session, repeats, now)
                if slow:
                    # Only alerts the store already holds are read; the status cache knows which.
                    known = [fp for fp in slow_fps if fp in self._status]
                    if known:
                        query = select(AlertRow).where(AlertRow.fingerprint.in_(known))
                        batch.rows = {r.fingerprint: r for r in session.scalars(query)}
                    for alert, fp, status, result, at in slow:
                        batch.now = at
                        self._ingest_one(batch, alert, fp, status, result)
                    batch.now = now
                    self._finish(batch)
                    insert_pending(session, batch.new)
                    status_after = {fp: row.status for fp, row in batch.rows.items()}
                if in_transaction is not None:
                    in_transaction(session)
        except Exception as exc:  # noqa: BLE001 - re-raised in every waiting caller
            self._reload()
            for ticket in tickets:
                ticket.error, ticket.done = exc, True
            return
        self._status.update(status_after)
        for ticket in tickets:
            ticket.done = True
            self.counters["alerts_received"] += len(ticket.alerts)
            self.counters["alerts_muted"] += ticket.result.muted
        self._notify(batch.changes)

    def _ingest_one(
        self, batch: _Batch, alert: Alert, fp: str, status: AlertStatus, result: IngestResult
    ) -> None:
        now = batch.now
        starts_at = alert.starts_at or now
        row = batch.rows.get(fp)
        if row is None:
            row = PendingAlert(
                fingerprint=fp,
                labels=dict(alert.labels),
                annotations=dict(alert.annotations),
                status=status.value,
                starts_at=starts_at,
                ends_at=alert.ends_at,
                source=alert.source.value,
                generator_url=alert.generator_url,
                score=alert.score,
                recommended_action=alert.recommended_action.value,
                first_seen=now,
                last_seen=now,
            )
            batch.new.append(row)
            batch.rows[fp] = row
            previous: str | None = None
        else:
            previous = row.status
            row.annotations = dict(alert.annotations)
            row.ends_at = alert.ends_at
            row.last_seen = now
            row.receive_count += 1
            row.status = status.value
            if alert.score is not None:
                row.score = alert.score
            if previous != status.value and status is AlertStatus.FIRING:
                row.starts_at = starts_at
        changed = previous is not None and previous != status.value
        if changed or previous is None:
            self._inhibitor.update(fp, row.labels, status is AlertStatus.FIRING)
        was_flapping = row.flapping
        if changed:
            row.transitions, row.flapping = flap_state(
                self._flap, list(row.transitions), now.timestamp(), True, row.flapping
            )
        if previous is not None and not changed:
            return  # a repeat: dedup, only last_seen and endsAt moved
        self._apply(batch, row, status, was_flapping, result)

    def _mute_reason(self, row: StoredAlert, now: datetime) -> str | None:
        silence = muting_silence(self._silences, row.labels, now, row.incident_id)
        if silence is not None:
            return f"{silence.kind.value}:{silence.id}"
        rule = self._inhibitor.inhibited_by(row.fingerprint, row.labels)
        return f"inhibited:{rule}" if rule is not None else None

    def _apply(
        self, batch: _Batch, row: StoredAlert, status: AlertStatus, was_flapping: bool, res: IngestResult
    ) -> None:
        now = batch.now
        firing = status is AlertStatus.FIRING
        row.muted_by = self._mute_reason(row, now) if firing else row.muted_by
        inc = self._open.get(row.incident_id) if row.incident_id else None
        if inc is not None:
            member = inc.members.get(row.fingerprint) or self._member(row)
            member.firing, member.flapping, member.onset = firing, row.flapping, row.starts_at
            inc.members[row.fingerprint] = member
            if row.flapping != was_flapping:
                verb = "started" if row.flapping else "stopped"
                self._event(
                    batch,
                    inc.id,
                    f"flapping_{verb}",
                    f"alert {row.labels.get('alertname', '')} {verb} flapping",
                    {"fingerprint": row.fingerprint},
                )
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
        if row.incident_id is not None:
            self._reopen(batch, row)
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
            for o in self._open.values()
            if (cluster is None or not o.root_path or o.root_path[0] == cluster)
            and not foreign(o.root_path, o.workloads, member)
            and (o.last_alert_at >= horizon or any(m.firing for m in o.members.values()))
        ]
        chosen = best_candidate(candidates, member, self.inventory)
        if chosen is None:
            inc = self._open_incident(batch, member)
            res.opened.append(inc.id)
        else:
            inc = self._open[chosen.id]
        inc.members[row.fingerprint] = member
        if not member.location.workloads <= inc.workloads:
            self._set_workloads(inc, inc.workloads | member.location.workloads)
        inc.last_alert_at = now
        row.incident_id = inc.id
        key = f"{inc.id}\0alert_added"
        batch.added.setdefault(key, []).append((row.fingerprint, _describe(row.labels), member.kind.value))
        batch.touched.add(inc.id)

    def _open_incident(self, batch: _Batch, member: Member) -> _Open:
        now = batch.now
        path, root = root_cause([member], self.inventory)
        inc = _Open(f"inc-{uuid.uuid4().hex[:12]}", path, Priority.P3, IncidentState.TRIGGERED, now)
        self._open[inc.id] = inc
        batch.session.add(
            IncidentRow(
                id=inc.id,
                title="",
                priority=Priority.P3.value,
                state=IncidentState.TRIGGERED.value,
                root_kind=root.kind.value,
                root_target=target_to_dict(root.target),
                opened_at=now,
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
            )
        )
        batch.session.flush()
        self._event(batch, inc.id, "opened", "incident opened", {}, change=ChangeKind.OPENED)
        self.counters["incidents_opened"] += 1
        return inc

    def _reopen(self, batch: _Batch, row: StoredAlert) -> None:
        assert row.incident_id is not None
        inc_row = batch.session.get(IncidentRow, row.incident_id)
        if inc_row is None:
            return
        target = inc_row
        while target.merged_into is not None:
            nxt = batch.session.get(IncidentRow, target.merged_into)
            if nxt is None:
                break
            target = nxt
        row.incident_id = target.id
        if target.id in self._open:
            inc = self._open[target.id]
            inc.members[row.fingerprint] = self._member(row)
            batch.touched.add(inc.id)
            return
        target.state = IncidentState.TRIGGERED.value
        target.resolved_at = None
        target.quiet_since = None
        target.reopen_count += 1
        inc = _Open(target.id, (), Priority(target.priority), IncidentState.TRIGGERED, batch.now)
        for alert in batch.session.scalars(select(AlertRow).where(AlertRow.incident_id == target.id)):
            inc.members[alert.fingerprint] = self._member(alert)
        inc.members[row.fingerprint] = self._member(row)
        self._open[target.id] = inc
        self._event(
            batch,
            target.id,
            "reopened",
            f"reopened: {_describe(row.labels)} fired again",
            {"fingerprint": row.fingerprint},
            change=ChangeKind.REOPENED,
        )
        batch.touched.add(target.id)

    # --- recompute ------------------------------------------------------------------------------

    def _finish(self, batch: _Batch) -> None:
        """Recompute root cause, impact and priority of touched incidents; merge what one fault explains."""
        verbs = {"alert_added": "joined", "alert_firing": "firing again", "alert_resolved": "resolved"}
        for key, added in batch.added.items():
            # One timeline event per incident, kind and transaction; it lists every alert concerned.
            incident_id, kind = key.split("\0")
            fps = [fp for fp, _, _ in added]
            first = added[0][1]
            single = f"alert {first} {'resolved' if kind == 'alert_resolved' else 'firing'}"
            message = single if len(added) == 1 else f"{len(added)} alerts {verbs[kind]} (first: {first})"
            data: dict[str, object] = {"fingerprints": fps, "kinds": sorted({k for _, _, k in added})}
            if len(added) == 1:
                data["fingerprint"] = fps[0]
            self._event(batch, incident_id, kind, message, data)
        pending = list(batch.touched)
        while pending:
            incident_id = pending.pop()
            inc = self._open.get(incident_id)
            if inc is None:
                continue
            self._recompute(batch, inc)
            if self._merge_into(batch, inc):
                pending.append(inc.id)

    def _recompute(self, batch: _Batch, inc: _Open) -> None:
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
        inc.root_path, root = root_cause(members, self.inventory)
        assessment = assess(inc.root_path, root, members, self.inventory, self.config.assume_spare_capacity)
        self._set_workloads(inc, self._workloads_of(inc, assessment))
        new_target = target_to_dict(root.target)
        if (row.root_kind, row.root_target) != (root.kind.value, new_target) and row.title:
            self._event(
                batch,
                inc.id,
                "root_cause_changed",
                f"root cause is now {root.kind.value} on {root.target}",
                {"kind": root.kind.value, "target": new_target},
                change=ChangeKind.UPDATED,
            )
        row.root_kind, row.root_target = root.kind.value, new_target
        row.title = title(root, assessment, seen(members))
        row.impact = impact_to_dict(
            assessment.impact,
            shares=dict(assessment.shares),
            stopped_jobs=list(assessment.stopped_jobs),
            priority_reason=assessment.reason,
        )
        row.first_onset_at = min(m.onset for m in members)
        row.last_alert_at = inc.last_alert_at
        row.updated_at = now
        is_new = self._is_new(batch, inc.id)
        if row.priority != assessment.priority.value or is_new:
            old = row.priority
            row.priority = assessment.priority.value
            inc.priority = assessment.priority
            self._event(
                batch,
                inc.id,
                "priority",
                f"priority {assessment.priority.value}: {assessment.reason}",
                {
                    "from": None if is_new else old,
                    "to": assessment.priority.value,
                    "reason": assessment.reason,
                },
                change=None if is_new else ChangeKind.PRIORITY_CHANGED,
            )
        row.quiet_since = None
        if not any(c[0] == inc.id and c[1] is not None for c in batch.changes):
            batch.changes.append((inc.id, ChangeKind.UPDATED, self._last_event(batch, inc.id)))

    def _start_quiet(self, batch: _Batch, inc: _Open, row: IncidentRow) -> None:
        row.updated_at = batch.now
        if row.quiet_since is None:
            row.quiet_since = batch.now
            self._event(batch, inc.id, "quiet", "all alerts resolved; waiting for the quiet period", {})
        if not any(c[0] == inc.id and c[1] is not None for c in batch.changes):
            batch.changes.append((inc.id, ChangeKind.UPDATED, self._last_event(batch, inc.id)))

    def _is_new(self, batch: _Batch, incident_id: str) -> bool:
        return any(c[0] == incident_id and c[1] is ChangeKind.OPENED for c in batch.changes)

    def _last_event(self, batch: _Batch, incident_id: str) -> TimelineRow:
        if incident_id in batch.last_event:
            return batch.last_event[incident_id]
        event = batch.session.scalars(
            select(TimelineRow).where(TimelineRow.incident_id == incident_id).order_by(TimelineRow.seq.desc())
        ).first()
        assert event is not None
        return event

    def _merge_into(self, batch: _Batch, inc: _Open) -> bool:
        """Fold other open incidents that the (new) root of ``inc`` explains into it."""
        merged = False
        for other in list(self._open.values()):
            if other.id == inc.id or not other.members:
                continue
            inside = bool(other.root_path) and contains(inc.root_path, other.root_path)
            symptom_only = not other.root_path and not other.workloads.isdisjoint(inc.workloads)
            if not (inside or symptom_only):
                continue
            for fp, member in other.members.items():
                inc.members[fp] = member
                alert = batch.rows.get(fp) or batch.session.get(AlertRow, fp)
                if alert is not None:
                    alert.incident_id = inc.id
            other_row = batch.session.get(IncidentRow, other.id)
            assert other_row is not None
            other_row.merged_into = inc.id
            other_row.state = IncidentState.RESOLVED.value
            other_row.resolved_at = batch.now
            self._event(
                batch,
                other.id,
                "merged",
                f"merged into {inc.id}",
                {"into": inc.id},
                change=ChangeKind.RESOLVED,
            )
            self._event(
                batch,
                inc.id,
                "merged",
                f"absorbed {other.id} ({len(other.members)} alerts)",
                {"from": other.id},
            )
            inc.last_alert_at = max(inc.last_alert_at, other.last_alert_at)
            del self._open[other.id]
            merged = True
        return merged

    def _event(
        self,
        batch: _Batch,
        incident_id: str,
        kind: str,
        message: str,
        data: dict[str, object],
        *,
        change: ChangeKind | None = None,
    ) -> TimelineRow:
        event = TimelineRow(incident_id=incident_id, at=batch.now, kind=kind, message=message, data=data)
        batch.session.add(event)
        batch.last_event[incident_id] = event
        if change is not None:
            batch.changes.append((incident_id, change, event))
        return event

    # --- time-driven work -----------------------------------------------------------------------

    def tick(self) -> None:
        """Resolve alerts whose endsAt passed and incidents quiet for the quiet period."""
        with self._lock:
            now = self.clock.now()
            with self._sessions() as session:
                stale = session.scalars(
                    select(AlertRow).where(
                        AlertRow.status == AlertStatus.FIRING.value, AlertRow.ends_at <= now
                    )
                ).all()
                expired = [
                    Alert(
                        labels=r.labels,
                        status=AlertStatus.RESOLVED,
                        starts_at=r.starts_at,
                        ends_at=r.ends_at,
                        annotations=r.annotations,
                    )
                    for r in stale
                ]
            if expired:
                self.ingest(expired)
            due = []
            with self._sessions() as session, session.begin():
                batch = _Batch(session, now)
                for inc in list(self._open.values()):
                    row = session.get(IncidentRow, inc.id)
                    if row is None or row.quiet_since is None or now - row.quiet_since < self._quiet:
                        continue
                    if any(m.firing or m.flapping for m in inc.members.values()):
                        continue
                    row.state = IncidentState.RESOLVED.value
                    row.resolved_at = now
                    row.updated_at = now
                    self._event(
                        batch,
                        inc.id,
                        "resolved",
                        "resolved: all alerts quiet for the quiet period",
                        {},
                        change=ChangeKind.RESOLVED,
                    )
                    due.append(inc.id)
            for incident_id in due:
                self._open.pop(incident_id, None)
                self.counters["incidents_resolved"] += 1
            self._notify(batch.changes)
            self._announce_due(now)

    # --- people ---------------------------------------------------------------------------------

    def _transition(
        self,
        incident_id: str,
        by: str,
        kind: str,
        message: str,
        *,
        change: ChangeKind,
        state: IncidentState | None,
        data: dict[str, object] | None = None,
    ) -> Incident:
        with self._lock:
            now = self.clock.now()
            with self._sessions() as session, session.begin():
                row = session.get(IncidentRow, incident_id)
                if row is None:
                    raise IncidentNotFound(incident_id)
                if row.state == IncidentState.RESOLVED.value and state is not None:
                    raise InputError(f"incident {incident_id} is resolved", field="state")
                batch = _Batch(session, now)
                if state is not None:
                    row.state = state.value
                    if incident_id in self._open:
                        self._open[incident_id].state = state
                if state is IncidentState.ACKNOWLEDGED:
                    row.acknowledged_at, row.acknowledged_by = now, by
                row.updated_at = now
                self._event(batch, incident_id, kind, message, {"by": by, **(data or {})}, change=change)
            self._notify(batch.changes)
            return self.store.get(incident_id)

    def acknowledge(self, incident_id: str, by: str) -> Incident:
        """Mark the incident acknowledged (idempotent once acknowledged or later)."""
        current = self.store.get(incident_id)
        if current.state is not IncidentState.TRIGGERED:
            return current
        return self._transition(
            incident_id,
            by,
            "acknowledged",
            f"acknowledged by {by}",
            change=ChangeKind.ACKNOWLEDGED,
            state=IncidentState.ACKNOWLEDGED,
        )

    def approve_remediation(self, incident_id: str, by: str) -> Incident:
        """Record a person's approval; the incident moves to mitigating."""
        return self._transition(
            incident_id,
            by,
            "remediation_approved",
            f"remediation approved by {by}",
            change=ChangeKind.MITIGATING,
            state=IncidentState.MITIGATING,
        )

    def mark_mitigating(self, incident_id: str, by: str, action: str) -> Incident:
        """An automatic or manual action is running against the incident."""
        return self._transition(
            incident_id,
            by,
            "mitigating",
            f"mitigating: {action}",
            change=ChangeKind.MITIGATING,
            state=IncidentState.MITIGATING,
            data={"action": action},
        )

    def silence_incident(self, incident_id: str, duration_seconds: float, by: str) -> Incident:
        """Mute the incident's alerts (present and future changes) for a while."""
        if duration_seconds <= 0:
            raise InputError("must be positive", field="duration_seconds")
        self.store.get(incident_id)
        now = self.clock.now()
        self.add_silence(
            [],
            now,
            now + timedelta(seconds=duration_seconds),
            by,
            comment=f"silence of {incident_id}",
            incident_id=incident_id,
        )
        return self._transition(
            incident_id,
            by,
            "silenced",
            f"silenced for {duration_seconds:g}s by {by}",
            change=ChangeKind.UPDATED,
            state=None,
            data={"seconds": duration_seconds},
        )

    def add_silence(
        self,
        matchers: Sequence[Matcher],
        starts_at: datetime,
        ends_at: datetime,
        created_by: str,
        *,
        comment: str = "",
        kind: SilenceKind = SilenceKind.SILENCE,
        incident_id: str | None = None,
    ) -> str:
        """Store a silence or maintenance window; returns its id."""
        if ends_at <= starts_at:
            raise InputError("must be after startsAt", field="endsAt")
        if not matchers and incident_id is None:
            raise InputError("at least one matcher is required", field="matchers")
        silence = Silence(
            f"sil-{uuid.uuid4().hex[:12]}",
            tuple(matchers),
            starts_at,
            ends_at,
            created_by,
            comment,
            kind,
            incident_id,
        )
        with self._lock:
            with self._sessions() as session, session.begin():
                session.add(
                    SilenceRow(
                        id=silence.id,
                        kind=kind.value,
                        matchers=[m.to_dict() for m in matchers],
                        starts_at=starts_at,
                        ends_at=ends_at,
                        created_by=created_by,
                        comment=comment,
                        incident_id=incident_id,
                    )
                )
            self._silences.append(silence)
        return silence.id

    def silences(self) -> list[Silence]:
        """Silences and maintenance windows that are not yet expired."""
        now = self.clock.now()
        with self._lock:
            return [s for s in self._silences if s.state(now) != "expired"]

    def open_incident_ids(self) -> Iterable[str]:
        """Ids of incidents that are not resolved."""
        with self._lock:
            return list(self._open)

    def open_priorities(self) -> list[Priority]:
        """Priority of each open incident (for metrics)."""
        with self._lock:
            return [inc.priority for inc in self._open.values()]

    def record_action(self, incident_id: str, action: str, outcome: str, message: str, by: str) -> Incident:
        """Put a remediation action and its outcome on the incident's timeline and action list."""
        with self._lock, self._sessions() as session, session.begin():
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise IncidentNotFound(incident_id)
            row.actions = [*row.actions, {"action": action, "outcome": outcome, "message": message, "by": by}]
            self._event(
                _Batch(session, self.clock.now()),
                incident_id,
                "action",
                f"{action}: {outcome} {message}".strip(),
                {"action": action, "outcome": outcome, "by": by},
            )
        return self.store.get(incident_id)

    def postmortem(self, incident_id: str) -> str:
        """A Markdown postmortem draft of one incident."""
        incident = self.store.get(incident_id)
        alerts = self.store.alerts_of(incident_id)
        onset = min((a.starts_at for a in alerts), default=incident.opened_at)
        names = [a.labels.get("alertname", "") for a in alerts]
        return render_postmortem(incident, min(onset, incident.opened_at), names)


def _status_of(alert: Alert, now: datetime) -> AlertStatus:
    """Resolved when the alert says so or its endsAt has passed (Alertmanager's rule), else firing."""
    if alert.status is AlertStatus.RESOLVED or (alert.ends_at is not None and alert.ends_at <= now):
        return AlertStatus.RESOLVED
    return AlertStatus.FIRING


def _describe(labels: dict[str, str]) -> str:
    where = [
        labels[k]
        for k in ("node", "Hostname", "instance", "gpu", "slurm_job", "job", "service")
        if labels.get(k)
    ]
    name = labels.get("alertname", "alert")
    return f"{name} ({', '.join(where)})" if where else name

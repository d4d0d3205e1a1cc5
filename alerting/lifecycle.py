"""What people do with an incident: acknowledge, approve remediation, mark mitigating, silence, resolve,
record an action, draft the postmortem. The silences and maintenance windows they add: ``alerting.silencing``.

``IncidentLifecycle`` is the part of ``IncidentEngine`` that serves Slack buttons, the API and the runbook
executor. Each change runs under the engine's lock in one transaction; listeners hear of it after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from alerting.batch import Batch
from alerting.db import in_lists, locked_row
from alerting.engine_lock import EngineLock
from alerting.incident_index import OpenIncidents
from alerting.inventory import Inventory
from alerting.outcomes import (
    ActionOutcome,
    already_acted,
    already_approved,
    already_mitigating,
    already_resolved,
    already_silenced,
    duration_text,
    resolved_conflict,
    still_firing,
)
from alerting.postmortem import (
    ABSORBED_KINDS,
    RECOVERED_FROM_ENDS_AT,
    RECOVERED_FROM_QUIET,
    alert_onset,
    render_postmortem,
)
from alerting.silences import Silence, incident_silenced_until
from alerting.silencing import SilenceKeeping
from alerting.store import Conflict, IncidentNotFound, IncidentStore, member_alerts, peak_impact
from alerting.store_models import AlertRow, IncidentRow, TimelineRow
from alerting.subscriptions import ChangeKind
from alerting.titles import root_cluster
from alerting.topology import target_from_dict
from gpuwarden.clock import Clock
from gpuwarden.errors import InputError
from gpuwarden.model import (
    AlertStatus,
    Incident,
    IncidentState,
    Priority,
    TimelineEvent,
    fault_name,
    root_key,
)

APPROVED = "remediation_approved"  # timeline kinds
MITIGATING = "mitigating"
REPEAT_WINDOW = timedelta(minutes=5)  # Slack's own window for a request's timestamp
# A person's words (a note, a mitigation's action): a Slack section holds 3,000 characters, with the author
# and the event's kind.
MAX_TEXT_CHARS = 2000


logger = logging.getLogger(__name__)


def free_text(text: str, field: str) -> str:
    """A person's words for the timeline and the Slack thread, stripped: refused (naming ``field``) when
    blank or longer than ``MAX_TEXT_CHARS``."""
    text = text.strip()
    if not text:
        raise InputError("must be a non-empty string", field=field)
    if len(text) > MAX_TEXT_CHARS:
        raise InputError(f"is {len(text)} characters; at most {MAX_TEXT_CHARS}", field=field)
    return text


class IncidentLifecycle(SilenceKeeping):
    """Operator actions on incidents; mixed into ``IncidentEngine``, whose state it uses."""

    clock: Clock
    store: IncidentStore
    inventory: Inventory | None
    _lock: EngineLock  # the engine's (``alerting.engine_lock``)
    _sessions: sessionmaker[Session]
    _open: OpenIncidents
    _stale: bool
    _silences: list[Silence]
    _silenced_incidents: set[str]

    counters: dict[str, int]

    def _notify(self, changes: Sequence[tuple[str, ChangeKind, TimelineRow]]) -> None:
        raise NotImplementedError  # the engine's: tell listeners after the commit

    def _fresh(self) -> None:
        raise NotImplementedError  # the engine's: rebuild the in-memory view if a failure left it stale

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
        data_of: Callable[[IncidentRow], dict[str, object]] | None = None,
        repeat: Callable[[Session, IncidentRow], bool] | None = None,
        already: Callable[[Incident], str] = lambda _: "already done",
    ) -> ActionOutcome:
        """A person's change of an incident, in one transaction; ``data_of``: more of the event's data, from
        the row as the transaction reads it. ``repeat``, asked of the incident's row in
        that transaction (``locked_row``: a concurrent change, a retry's first attempt whose COMMIT is still
        in flight, commits first), says the change was made already: nothing is written, no listener is
        told, and the outcome says why (``already``)."""
        with self._lock:
            now = self.clock.now()
            with self._sessions() as session, session.begin():
                row = locked_row(session, IncidentRow, incident_id)
                if row is None:
                    raise IncidentNotFound(incident_id)
                if row.state == IncidentState.RESOLVED.value and state is not None:
                    raise resolved_conflict(incident_id, row.merged_into)
                done = repeat is not None and repeat(session, row)
                batch = Batch(session, now)
                if not done:
                    if state is not None:
                        row.state = state.value
                        if incident_id in self._open:
                            self._open[incident_id].state = state
                    if state is IncidentState.ACKNOWLEDGED:
                        row.acknowledged_at, row.acknowledged_by = now, by
                    row.updated_at = now
                    more = {**(data or {}), **(data_of(row) if data_of is not None else {})}
                    batch.event(incident_id, kind, message, {"by": by, **more}, change=change)
            current = self.store.get(incident_id) if done else None
            if current is not None:  # nothing changed: no timeline entry, no listener call
                return ActionOutcome(current, already(current))
            self._notify(batch.changes)
            return ActionOutcome(self.store.get(incident_id))

    def acknowledge(self, incident_id: str, by: str) -> Incident:
        """Mark the incident acknowledged (idempotent until it is resolved, then refused)."""
        return self.acknowledge_outcome(incident_id, by).incident

    def acknowledge_outcome(self, incident_id: str, by: str) -> ActionOutcome:
        """``acknowledge``, saying when it changed nothing and why: who acknowledged the incident before (and
        when), or who is mitigating it. A repeat changes nothing: no timeline entry, no listener call."""
        return self._transition(
            incident_id,
            by,
            "acknowledged",
            f"acknowledged by {by}",
            change=ChangeKind.ACKNOWLEDGED,
            state=IncidentState.ACKNOWLEDGED,
            repeat=lambda _, row: row.state != IncidentState.TRIGGERED.value,
            already=already_acted,
        )

    def resolve(self, incident_id: str, by: str) -> Incident:
        """Resolve the incident by hand (see ``resolve_outcome``)."""
        return self.resolve_outcome(incident_id, by).incident

    def resolve_outcome(self, incident_id: str, by: str) -> ActionOutcome:
        """Resolve the incident by hand, without waiting for the quiet period: allowed once none of its alerts
        fires (refused, changing nothing, while any does). As the tick's resolution: a ``resolved`` event,
        listeners told ``RESOLVED``, the incident leaves the open set; an alert of it that fires again within
        the reopen window reopens it. Idempotent, as ``acknowledge_outcome``: a resolved incident changes
        nothing and says who resolved it and when; one merged into another is refused, naming that one."""
        with self._lock:
            self._fresh()
            now = self.clock.now()
            with self._sessions() as session, session.begin():
                row = locked_row(session, IncidentRow, incident_id)  # the check and the change: one step
                if row is None:
                    raise IncidentNotFound(incident_id)
                done = row.state == IncidentState.RESOLVED.value
                if done and row.merged_into:
                    raise resolved_conflict(incident_id, row.merged_into)
                if not done:
                    # A flapping alert counts as firing until it settles, as for the tick's resolution (and
                    # for the capacity other incidents count it as taking).
                    firing = session.scalars(
                        select(AlertRow).where(
                            AlertRow.incident_id == incident_id,
                            (AlertRow.status == AlertStatus.FIRING.value) | AlertRow.flapping.is_(True),
                        )
                    ).all()
                    if firing:
                        raise still_firing(
                            incident_id, firing, incident_silenced_until(self._silences, incident_id, now)
                        )
                    batch = Batch(session, now)
                    close(batch, row, f"resolved by {by}", {"by": by})
            if done:  # nothing changes: no timeline entry, no listener call
                current = self.store.get(incident_id)
                return ActionOutcome(current, already_resolved(current))
            self._closed([incident_id])
            self._notify(batch.changes)
        return ActionOutcome(self.store.get(incident_id))

    def _closed(self, incident_ids: Iterable[str]) -> None:
        """After the commit that resolved them: out of the open set, counted."""
        for incident_id in incident_ids:
            self._open.pop(incident_id, None)
            self.counters["incidents_resolved"] += 1

    def approve_remediation(self, incident_id: str, by: str) -> Incident:
        """Record a person's approval (see ``approve_remediation_outcome``)."""
        return self.approve_remediation_outcome(incident_id, by).incident

    def approve_remediation_outcome(
        self, incident_id: str, by: str, root: str | None = None
    ) -> ActionOutcome:
        """Record a person's approval of remediating the incident's root cause; it moves to mitigating. The
        same remediation approved again while it is mitigating, by anyone (a second press, a retried
        request), changes nothing (DESIGN.md: never repeat a remediation); a new root cause is a new one.
        ``root`` (``model.root_key``): the root cause the person was shown; one that has changed since is
        refused, in the same transaction, changing nothing."""

        def repeat(session: Session, row: IncidentRow) -> bool:
            if root is not None:
                _check_root(row, root)
            return _approved_already(session, row)

        return self._transition(
            incident_id,
            by,
            APPROVED,
            f"remediation approved by {by}",
            change=ChangeKind.MITIGATING,
            state=IncidentState.MITIGATING,
            data_of=lambda row: {"root_kind": row.root_kind, "root_target": row.root_target},
            repeat=repeat,
            already=already_approved,
        )

    def mark_mitigating(self, incident_id: str, by: str, action: str) -> Incident:
        """An automatic or manual action is running against the incident (see ``mark_mitigating_outcome``)."""
        return self.mark_mitigating_outcome(incident_id, by, action).incident

    def mark_mitigating_outcome(self, incident_id: str, by: str, action: str) -> ActionOutcome:
        """An automatic or manual action is running against the incident; it moves to mitigating. The same
        action marked again while it is mitigating, by anyone (a retried request), changes nothing; another
        action is recorded."""
        action = free_text(action, "action")
        return self._transition(
            incident_id,
            by,
            MITIGATING,
            f"mitigating: {action}",
            change=ChangeKind.MITIGATING,
            state=IncidentState.MITIGATING,
            data={"action": action},
            repeat=lambda session, row: _mitigating_already(session, row, action),
            already=lambda incident: already_mitigating(incident, action),
        )

    def add_note(self, incident_id: str, by: str, text: str) -> Incident:
        """A person's note on the timeline (resolved incidents too: postmortems are written after)."""
        text = free_text(text, "text")
        merged_into = self._merged_into(incident_id)
        if merged_into:  # its story goes on in the other, where people look (and where its alerts are now)
            raise resolved_conflict(incident_id, merged_into)
        # Not deduplicated, unlike the others: the same words may be said twice on purpose.
        return self._transition(
            incident_id, by, "note", f"note by {by}: {text}", change=ChangeKind.UPDATED, state=None
        ).incident

    def silence_incident(self, incident_id: str, duration_seconds: float, by: str) -> Incident:
        """Mute the incident's alerts for a while (see ``silence_incident_outcome``)."""
        return self.silence_incident_outcome(incident_id, duration_seconds, by).incident

    def silence_incident_outcome(self, incident_id: str, duration_seconds: float, by: str) -> ActionOutcome:
        """Mute the incident's alerts (present and future changes) for a while: its changes reach listeners
        marked ``silenced_until``, and one catch-up event follows the silence (``alerting.muting``).

        A repeat changes nothing (no second silence, no second timeline entry), and says whose silence
        holds (the one that ends last): a request while the incident's active silences have at least half the
        asked-for time left, by anyone (a second person's "Silence 1 h" a few minutes after the first's would
        only have moved the end by those minutes), or the same person's request for no longer than the
        silence they made less than ``REPEAT_WINDOW`` ago (a Slack button pressed twice, a replayed request).
        Past that, it extends the silence materially: a new silence is made."""
        if duration_seconds <= 0:
            raise InputError("must be positive", field="duration_seconds")
        duration = timedelta(seconds=duration_seconds)
        with self._lock:  # the check and the silence together: two presses at once make one
            current = self.store.get(incident_id)
            if current.state is IncidentState.RESOLVED:  # before the silence: a refusal changes nothing
                raise resolved_conflict(incident_id, self._merged_into(incident_id))
            now = self.clock.now()
            held = [s for s in self.silences() if s.incident_id == incident_id and s.state(now) == "active"]
            holding = _holding(held, now, duration, by)
            if holding is not None:
                return ActionOutcome(current, already_silenced(holding.ends_at, holding.created_by))
            silence_id = self.add_silence(
                [], now, now + duration, by, comment=f"silence of {incident_id}", incident_id=incident_id
            )
            self._silenced_incidents.add(incident_id)  # the tick catches up when the silence ends
            return self._transition(
                incident_id,
                by,
                "silenced",
                # The id, the one handle that lifts it early (``DELETE /api/v2/silence/{id}``): no alert
                # names it once the incident resolved, and ``GET /api/v2/silences`` does not list it.
                f"silenced for {duration_text(duration_seconds)} by {by} (silence {silence_id})",
                change=ChangeKind.UPDATED,
                state=None,
                # Said so that a reload knows this silence held notifications back (before this version
                # silences did not, and their incidents have nothing to catch up on).
                data={"seconds": duration_seconds, "holds_notifications": True, "silence_id": silence_id},
            )

    def _merged_into(self, incident_id: str) -> str | None:
        """The incident this one was merged into, if it was."""
        with self._sessions() as session:
            row = session.get(IncidentRow, incident_id)
            return row.merged_into if row is not None else None

    def open_incident_ids(self) -> Iterable[str]:
        """Ids of incidents that are not resolved."""
        with self._lock:
            self._fresh_if_possible()
            return list(self._open)

    def open_priorities(self) -> list[Priority]:
        """Priority of each open incident (for metrics; without the engine's lock unless the view is stale,
        so a scrape does not wait for a long transaction such as a replay's: copying a dict's values runs
        without a thread switch)."""
        if self._stale:
            with self._lock:
                self._fresh_if_possible()
        return [inc.priority for inc in list(self._open.values())]

    def _fresh_if_possible(self) -> None:
        """The view rebuilt if a failure left it stale; while the store is still down, as the failure left it
        (metrics read it; ingest and the tick rebuild it before they use it)."""
        try:
            self._fresh()
        except Exception:  # a read of the view must not fail with the store (metrics read it)
            logger.debug("open incidents not rebuilt yet: the store is unreachable", exc_info=True)

    def record_action(self, incident_id: str, action: str, outcome: str, message: str, by: str) -> Incident:
        """Put a remediation action and its outcome on the incident's timeline and action list."""
        with self._lock, self._sessions() as session, session.begin():
            row = session.get(IncidentRow, incident_id)
            if row is None:
                raise IncidentNotFound(incident_id)
            row.actions = [*row.actions, {"action": action, "outcome": outcome, "message": message, "by": by}]
            Batch(session, self.clock.now()).event(
                incident_id,
                "action",
                f"{action}: {outcome} {message}".strip(),
                {"action": action, "outcome": outcome, "by": by},
            )
        return self.store.get(incident_id)

    def postmortem(self, incident_id: str) -> str:
        """A Markdown postmortem draft of one incident."""
        with self._sessions() as session:
            incident = self.store.load_incident(session, incident_id)
            row = session.get(IncidentRow, incident_id)
            assert row is not None
            alerts = member_alerts(session, incident_id)
            absorbed = _absorbed_actions(session, incident_id)
        # An alert that fires again gets a new startsAt; the incident keeps the earliest it saw. An alert
        # raised a while after its fault began says when it began (``alert_onset``).
        onsets = (alert_onset(a.starts_at, a.annotations) for a in alerts)
        onset = min([row.first_onset_at, incident.opened_at, *onsets])
        names = [a.labels.get("alertname", "") for a in alerts]
        recovered = _recovered_at(row, alerts)
        peak = peak_impact(row.impact or {})
        cluster = root_cluster(incident.root_cause.target, self.inventory)
        if recovered is None:
            return render_postmortem(
                incident, onset, names, None, peak_impact=peak, cluster=cluster, absorbed=absorbed
            )
        return render_postmortem(
            incident, onset, names, *recovered, peak_impact=peak, cluster=cluster, absorbed=absorbed
        )


def _absorbed_actions(session: Session, incident_id: str) -> list[TimelineEvent]:
    """What people did on the incidents merged into this one, merges into those included, before they
    merged (``postmortem.ABSORBED_KINDS``), each event's ``data["incident"]`` naming its incident: an ack
    there is the fault's ack, as reminders count it (``reminding.stored_pages``)."""
    found: list[TimelineEvent] = []
    seen, into = {incident_id}, [incident_id]
    while into:
        merged: list[str] = []
        for chunk in in_lists(into):
            merged += session.scalars(select(IncidentRow.id).where(IncidentRow.merged_into.in_(chunk)))
        into = sorted(set(merged) - seen)
        seen.update(into)
        for chunk in in_lists(into):
            query = select(TimelineRow).where(
                TimelineRow.incident_id.in_(chunk), TimelineRow.kind.in_(sorted(ABSORBED_KINDS))
            )
            found += [
                TimelineEvent(t.at, t.kind, t.message, {**t.data, "incident": t.incident_id}, t.seq)
                for t in session.scalars(query)
            ]
    return sorted(found, key=lambda e: (e.at, e.seq or 0))


def _holding(held: Sequence[Silence], now: datetime, duration: timedelta, by: str) -> Silence | None:
    """Of an incident's active silences, the one that ends last when a request by ``by`` for ``duration``
    is a repeat (``silence_incident_outcome``): it has at least half of ``duration`` left, or ``by`` made a
    silence at least as long less than ``REPEAT_WINDOW`` ago; else None."""
    last = max(held, key=lambda s: s.ends_at, default=None)
    if last is None:
        return None
    if last.ends_at - now >= duration / 2:
        return last
    again = any(
        s.created_by == by and now - s.starts_at <= REPEAT_WINDOW and s.ends_at - s.starts_at >= duration
        for s in held
    )
    return last if again else None


def _latest(session: Session, incident_id: str, kind: str) -> TimelineRow | None:
    """The incident's latest timeline event of ``kind``."""
    query = select(TimelineRow).where(TimelineRow.incident_id == incident_id, TimelineRow.kind == kind)
    return session.scalars(query.order_by(TimelineRow.seq.desc()).limit(1)).first()


def _mitigating_already(session: Session, row: IncidentRow, action: str) -> bool:
    """Whether the incident is mitigating with ``action`` already (its latest one)."""
    if row.state != IncidentState.MITIGATING.value:
        return False
    last = _latest(session, row.id, MITIGATING)
    return last is not None and last.data.get("action") == action


def _check_root(row: IncidentRow, root: str) -> None:
    """Refuse an approval of a root cause the incident no longer has: a Slack Approve pressed on a message
    whose dialog named the GPU, after the node took over as root cause, recorded the node's remediation."""
    target = str(target_from_dict(row.root_target))
    if root_key(row.root_kind, target) != root:
        raise Conflict(
            f"{row.id}'s root cause changed after the message you pressed was posted: it is now"
            f" {fault_name(row.root_kind)} on {target}; nothing was approved (approve on the message as it"
            " is now)",
            field="incident",
        )


def _approved_already(session: Session, row: IncidentRow) -> bool:
    """Whether remediating the incident's root cause is approved already and it is still mitigating (an
    approval stored before approvals named their root cause counts for any)."""
    if row.state != IncidentState.MITIGATING.value:
        return False
    last = _latest(session, row.id, APPROVED)
    if last is None:
        return False
    if "root_kind" not in last.data:
        return True
    return (last.data["root_kind"], last.data.get("root_target")) == (row.root_kind, row.root_target)


def close(batch: Batch, row: IncidentRow, message: str, data: dict[str, object]) -> None:
    """Resolve an incident's row now, with its ``resolved`` event, listeners told ``RESOLVED`` (the tick's
    resolution after the quiet period, and a person's)."""
    row.state = IncidentState.RESOLVED.value
    row.resolved_at = batch.now
    row.updated_at = batch.now
    batch.event(row.id, "resolved", message, data, change=ChangeKind.RESOLVED)


def _recovered_at(row: IncidentRow, alerts: Sequence[AlertRow]) -> tuple[datetime, str] | None:
    """When the fault of a resolved incident ended, and where that time comes from: its alerts' last endsAt,
    no later than when the engine saw them all resolved (``quiet_since``, a flapping alert's end included);
    None while it is open, or when it was merged into another (the fault went on there)."""
    if row.resolved_at is None or row.merged_into is not None:
        return None
    quiet = row.quiet_since or row.resolved_at
    ends = [a.ends_at for a in alerts if a.ends_at is not None]
    if ends and len(ends) == len(alerts) and max(ends) <= quiet:
        return max(ends), RECOVERED_FROM_ENDS_AT
    return quiet, RECOVERED_FROM_QUIET

"""Muting: which firing alerts a silence, maintenance window or inhibition holds back, and their release.

Alertmanager notifies a muted alert once what muted it ends. ``MuteTracking`` (mixed into the engine) keeps
the muted firing alerts in memory; each tick frees those no longer muted and sends them through ingest again,
past the repeat fast path, so they join or open an incident as if they had just fired.

A silenced incident still changes (alerts of its fault join it, its priority moves; an alert of a fault beside
it joins it as unsilenced and ends the silence: ``_end_if_beside``; so does an incident of such a fault merged
into it, or such alerts regrouped into it, by one rule: ``root_facts.beside_held``; the transaction keeps such
an end, ``_lift_early``, so that what else comes in beside it is named in the same event; an incident merged
into another loses its silence: ``_drop_absorbed_silences``), but its changes reach listeners marked
``silenced_until``, and notifiers page nobody for them. When its silence ends while it is open, the tick adds
one ``silence_ended`` event that catches up on what happened meanwhile (``alerting.catchup``): a priority
change (a broadcast) when the incident became more urgent, else an update. Which incidents wait for that
event is read from the timeline (a ``silenced`` event with no ``silence_ended`` after it), so a restart keeps
it. In a silence's last half hour, when the Slack button's press extends it, one ``silence_ending`` event
(told silenced: an edit in place, paging nobody) offers "Extend silence 1 h" on the incident's message
(``_tell_silences_ending``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.batch import Batch, IngestResult, Lifted, OpenIncident
from alerting.catchup import (
    CLOSING,
    SILENCE_ENDING,
    SILENCED,
    catch_up,
    resolved_at_end,
    resolved_since,
    silence_spans,
)
from alerting.db import in_lists
from alerting.engine_lock import EngineLock
from alerting.faults import classify
from alerting.incident_index import OpenIncidents
from alerting.inhibition import Inhibitor
from alerting.inventory import Inventory
from alerting.member import Member
from alerting.pending import StoredAlert
from alerting.reminders import FIRST_TOLD, SILENCE_ENDED, announced_at, unsilenced_at
from alerting.root_facts import beside_held
from alerting.silence_index import SilenceIndex
from alerting.silences import EXTENDABLE, Silence, incident_silenced_until
from alerting.silencing import expire_row
from alerting.store import alert_from_row, silence_from_row
from alerting.store_models import AlertRow, IncidentRow, SilenceRow, TimelineRow
from alerting.subscriptions import ChangeKind
from alerting.topology import UNKNOWN, Path, locate
from gpuwarden.clock import Clock, rfc3339, shown
from gpuwarden.model import Alert, AlertStatus

_MARKS = (SILENCED, SILENCE_ENDED, *CLOSING)  # the timeline events ``MuteTracking._track_waiting`` reads


class MuteTracking:
    """The engine's muted firing alerts; see the module docstring."""

    clock: Clock
    _lock: EngineLock  # the engine's (``alerting.engine_lock``)
    _sessions: sessionmaker[Session]
    _silences: list[Silence]
    _inhibitor: Inhibitor
    # fingerprint -> (labels, incident id) of each firing alert that is muted
    _muted: dict[str, tuple[dict[str, str], str | None]]
    _recheck: set[str]  # fingerprints whose next repeat takes the slow path
    _open: OpenIncidents
    _silenced_incidents: set[str]  # incidents silenced and not caught up yet (see the module docstring)
    _catch_up_since: dict[str, datetime]  # of those, silenced by an earlier version: catch up from then
    _ending_told: dict[str, datetime]  # incident -> the end of its silence whose last half hour was told
    _hold: timedelta  # ``alerting.announce_delay_seconds``
    inventory: Inventory | None
    _silence_index: SilenceIndex | None = None  # of the current ``_silences`` list (replaced on a change)

    def ingest(self, alerts: Sequence[Alert]) -> IngestResult:
        raise NotImplementedError  # the engine's

    def _notify(self, changes: Sequence[tuple[str, ChangeKind, TimelineRow]]) -> None:
        raise NotImplementedError  # the engine's: tell listeners after the commit

    def muted_count(self) -> int:
        """How many firing alerts a silence, maintenance window or inhibition holds back now (no lock: a
        metrics scrape must not wait for a long transaction; a dict's length reads atomically)."""
        return len(self._muted)

    def mute_state(
        self, fingerprint: str, labels: dict[str, str], incident_id: str | None = None
    ) -> tuple[list[str], list[str]]:
        """What mutes an alert now: the ids of the silences (and windows), and the fingerprint of an alert
        that inhibits it (Alertmanager's ``silencedBy`` and ``inhibitedBy``)."""
        now = self.clock.now()
        with self._lock:
            placed = self._placed(labels)
            silenced = [s.id for s in self._indexed_silences().muting(labels, now, incident_id, placed)]
            source = self._inhibitor.inhibiting(fingerprint, labels)
        return silenced, [] if source is None else [source]

    def _mute_reason(self, row: StoredAlert, now: datetime) -> str | None:
        return self._muted_by(row.fingerprint, row.labels, row.incident_id, now)

    def _muted_by(
        self, fingerprint: str, labels: dict[str, str], incident_id: str | None, now: datetime
    ) -> str | None:
        silences = self._muting(labels, incident_id, now)
        if silences:
            return f"{silences[0].kind.value}:{silences[0].id}"
        rule = self._inhibitor.inhibited_by(fingerprint, labels)
        return f"inhibited:{rule}" if rule is not None else None

    def _muting(self, labels: dict[str, str], incident_id: str | None, now: datetime) -> list[Silence]:
        """The silences and windows that mute the alert now, in the list's order."""
        if not self._silences:  # no silence or window at all (the usual case): nothing to index or place
            return []
        return self._indexed_silences().muting(labels, now, incident_id, self._placed(labels))

    def _held(self, incident_id: str, now: datetime) -> bool:
        """Whether a silence of the incident holds it now: an alert that joins it beside what its root
        explains ends the silence (``joining``), as a merge or a regrouping that brings such a fault in does
        (``root_facts.beside_held``)."""
        return bool(self._silences) and self._indexed_silences().holds_incident(incident_id, now)

    def _indexed_silences(self) -> SilenceIndex:
        """The index of the current silences: every change replaces the list, so its identity versions it."""
        index = self._silence_index
        if index is None or index.silences is not self._silences:
            index = self._silence_index = SilenceIndex(self._silences)
        return index

    def _placed(self, labels: Mapping[str, str]) -> Callable[[], Mapping[str, str]]:
        """The alert's labels plus the ``cluster``, ``rack`` and ``node`` the inventory places it in where
        it has none of its own, computed when first asked for (only maintenance windows ask). Kept in a
        list, not ``functools.cache``: wrapping a function costs more than all the rest of this for an alert
        that no window asks about (a twentieth of the applier's time in a storm)."""
        kept: list[Mapping[str, str]] = []

        def placed() -> Mapping[str, str]:
            if not kept:
                path = locate(labels, classify(labels), self.inventory).path
                topology = {
                    n: v for n, v in zip(("cluster", "rack", "node"), path, strict=False) if v != UNKNOWN
                }
                kept.append({**topology, **{k: v for k, v in labels.items() if v}})
            return kept[0]

        return placed

    def _release_unmuted(self, now: datetime) -> None:
        """Muted firing alerts whose silence or window ended, or whose inhibiting alert resolved, go on
        as if they had just fired (Alertmanager notifies them then): correlated into an incident."""
        freed = [
            fp for fp, (labels, inc) in self._muted.items() if self._muted_by(fp, labels, inc, now) is None
        ]
        if not freed:
            return
        with self._sessions() as session:
            rows = [
                row
                for chunk in in_lists(freed)
                for row in session.scalars(select(AlertRow).where(AlertRow.fingerprint.in_(chunk)))
            ]
            alerts = [
                # Sent again as stored: an endsAt that is a resolve timeout stays one.
                alert_from_row(r, AlertStatus.FIRING, r.ends_by_timeout)
                for r in rows
                if r.status == AlertStatus.FIRING.value
            ]
        self._recheck.update(freed)
        self.ingest(alerts)

    def _track_silenced(self, session: Session, open_ids: Iterable[str]) -> None:
        """Which incidents wait for a ``silence_ended`` event, as their timelines say (at a reload): the open
        ones, and those resolved whose silence still runs, as live keeps them until the tick sees it end
        (one that reopens before the silence ends catches up on what it held back; one resolved when it
        ended, or since, does not: ``resolved_at_end``)."""
        now = self.clock.now()
        running = select(SilenceRow.incident_id).where(
            SilenceRow.incident_id.is_not(None), SilenceRow.ends_at > now
        )
        ids = sorted({*open_ids, *(i for i in session.scalars(running) if i is not None)})
        self._silenced_incidents.clear()
        self._ending_told.clear()  # read again from the timelines when asked (``_tell_silences_ending``)
        if not ids:
            return
        marks = session.execute(
            select(TimelineRow.incident_id, TimelineRow.kind, TimelineRow.at, TimelineRow.data)
            .where(TimelineRow.incident_id.in_(ids), TimelineRow.kind.in_(_MARKS))
            .order_by(TimelineRow.seq)
        )
        self._track_waiting(session, ids, marks, now)

    def _track_reopened(self, batch: Batch, incident_id: str) -> None:
        """A resolved incident reopened: whether it waits for a ``silence_ended`` event, as its timeline says
        now, by ``_track_silenced``'s rule. Live keeps a resolved incident waiting while its silence runs and
        drops it at the first tick that sees the silence end; a reopening dated before that end (a journal
        record applied late) makes it open when the silence ended, so it waits for its catch-up, tick or
        restart between or not (one restarted in between forgets it: it was resolved then)."""
        if incident_id in self._silenced_incidents:
            return
        events = batch.timeline(incident_id, _MARKS)  # the reopening this transaction wrote too
        marks = [(e.incident_id, e.kind, e.at, e.data) for e in events]
        self._track_waiting(batch.session, [incident_id], marks, batch.silence_time())

    def _track_waiting(
        self,
        session: Session,
        ids: Sequence[str],
        marks: Iterable[tuple[str, str, datetime, dict[str, object] | None]],
        now: datetime,
    ) -> None:
        """Add those of incidents ``ids`` that wait for a ``silence_ended`` event, by their ``marks`` (their
        silences, catch-ups, resolutions and reopenings in timeline order), to ``_silenced_incidents``."""
        last: dict[str, tuple[str, dict[str, object]]] = {}
        since: dict[str, list[tuple[str, datetime]]] = {}  # resolutions and reopenings after the last mark
        for incident_id, kind, at, data in marks:
            if kind in (SILENCED, SILENCE_ENDED):
                last[incident_id], since[incident_id] = (kind, data or {}), []
            elif incident_id in since:
                since[incident_id].append((kind, at))
        ends: dict[str | None, datetime] = {
            incident_id: end
            for incident_id, end in session.execute(
                select(SilenceRow.incident_id, func.max(SilenceRow.ends_at))
                .where(SilenceRow.incident_id.in_(ids))
                .group_by(SilenceRow.incident_id)
            )
        }
        for incident_id, (kind, data) in last.items():
            if kind != SILENCED:
                continue
            end = ends.get(incident_id)
            if end is not None and end <= now and resolved_since(since[incident_id], end):
                # Resolved when its silence ended, or after, with no catch-up since: the first tick after the
                # end found it resolved (its quiet period may end in that tick, before the silence's end is
                # seen) and dropped it, nothing to catch up on; it reopened since.
                continue
            if data.get("holds_notifications"):
                self._silenced_incidents.add(incident_id)
            elif incident_silenced_until(self._silences, incident_id, now) is not None:
                # Silenced by a version that held nothing back, still silenced: this one holds back what
                # comes from now on, so it catches up on that (and only that) when the silence ends.
                self._silenced_incidents.add(incident_id)
                self._catch_up_since[incident_id] = now

    def _end_if_beside(
        self, batch: Batch, inc: OpenIncident, new: Iterable[Member], why: Callable[[], str]
    ) -> None:
        """End the silence that holds ``inc`` when ``new``, coming into it (an alert joining, an incident
        merged in), brings a fault beside the one it was set for (``root_facts.beside_held``), saying
        ``why``. Ended already by this transaction for another such fault (a second incident merged in after
        the first), what else comes in is judged against what the silence held then (the first merge may
        have moved the root up to the rack) and, beside it too, named in the same ``silence_ended`` event."""
        lifted = batch.lifted.get(inc.id)
        if lifted is None:
            if self._held(inc.id, batch.silence_time()) and beside_held(inc.root_path, inc.facts, new):
                # Before ``new`` joins: what the silence held.
                self._lift_early(batch, inc.id, why(), root=inc.root_path, members=inc.members.values())
            return
        if not beside_held(lifted.root, lifted.facts, new):
            return
        old = _early(lifted.whys)
        lifted.whys.append(why())
        # A new dict: the JSON column does not see a change made in place.
        lifted.event.message = lifted.event.message.replace(old, _early(lifted.whys), 1)
        lifted.event.data = {**lifted.event.data, "early": _early(lifted.whys), "beside": len(lifted.whys)}

    def _lift_early(
        self,
        batch: Batch,
        incident_id: str,
        why: str,
        *,
        root: Path,
        members: Iterable[Member],
        cause: TimelineRow | None = None,
    ) -> None:
        """End the incident's silences now because ``why`` (``_lift_silences``), and keep for the rest of the
        transaction that it did, with the ``root`` and ``members`` the silence held: whatever else comes in
        beside them (a join, a merge, a regrouping, in any order) is named in the same ``silence_ended``
        event (``_end_if_beside``), not judged against a silence that no longer holds."""
        event = self._lift_silences(batch, incident_id, why, cause)
        batch.lifted[incident_id] = Lifted(event, [why], root, list(members))

    def _expire_silences_of(self, batch: Batch, incident_id: str) -> list[SilenceRow]:
        """Expire the incident's running silences now, in the batch's transaction and in memory; their
        rows. Now is when the batch checks silences (``Batch.silence_time``), not a journal record's earlier
        time: a silence that ended in between keeps its end, one set in between its start."""
        now = batch.silence_time()
        rows = list(
            batch.session.scalars(
                select(SilenceRow).where(SilenceRow.incident_id == incident_id, SilenceRow.ends_at > now)
            )
        )
        for row in rows:
            expire_row(row, now)
        ended = {row.id: silence_from_row(row) for row in rows}
        self._silences = [ended.get(s.id, s) for s in self._silences]  # a failure rebuilds it (``_fresh``)
        return rows

    def _drop_absorbed_silences(self, batch: Batch, incident_id: str) -> list[str]:
        """End the silences of an incident merged into another, now, quietly: it mutes nothing any more
        (its alerts are the other's), and must not read as silenced in listings, the API or Slack. Whose
        silences they were, for the merge to say (none: it was not silenced)."""
        now = batch.silence_time()
        if not any(s.incident_id == incident_id and s.ends_at > now for s in self._silences):
            return []
        rows = self._expire_silences_of(batch, incident_id)
        self._silenced_incidents.discard(incident_id)
        self._catch_up_since.pop(incident_id, None)
        self._ending_told.pop(incident_id, None)
        return sorted({row.created_by for row in rows})

    def _lift_silences(
        self, batch: Batch, incident_id: str, why: str, cause: TimelineRow | None = None
    ) -> TimelineRow:
        """End the incident's silences now, in the batch's transaction, because ``why``: a fault beside the
        one they were set for joined it (``joining``), which must page. Its ``silence_ended`` event says
        so, with what the silence held back (``catch_up``), so the tick has nothing left to catch up on;
        ``cause``, the event of what ended it (the reopening that fault made), is not of those."""
        spans = silence_spans(batch.session, incident_id)  # as set: all that came so far came while they held
        self._expire_silences_of(batch, incident_id)
        incident = batch.session.get(IncidentRow, incident_id)
        assert incident is not None
        # With what this transaction wrote of it before now: an alert that joined under the silence earlier
        # in the same POST happened while silenced.
        events = [e for e in batch.timeline(incident_id) if e is not cause]
        since = self._catch_up_since.pop(incident_id, None)
        message, data, _ = catch_up(events, incident.priority, since, early=why, spans=spans)
        # The spans as the expiry left them (ending now), not as set (``spans``): what _told_first reads.
        after = silence_spans(batch.session, incident_id)
        told_first = self._told_first(batch.session, incident_id, events, batch.silence_time(), after)
        data = {**data, "early": why, **told_first}
        event = batch.event(incident_id, SILENCE_ENDED, message, data, change=ChangeKind.UPDATED)
        self._silenced_incidents.discard(incident_id)
        self._ending_told.pop(incident_id, None)
        return event

    def _told_first(
        self,
        session: Session,
        incident_id: str,
        timeline: Sequence[TimelineRow],
        now: datetime,
        spans: Sequence[tuple[datetime, datetime]],
    ) -> dict[str, object]:
        """``{FIRST_TOLD: True}`` when the end of the incident's silence, told now, is the first the channel
        hears of it: its opening was told while a silence of it held it (one set within the announce delay:
        Slack posted nothing then, and posts the incident's message now), as ``reminding.stored_pages``
        reads it, and no silence of it ended since, told or not: one that ended while it was resolved (no
        ``silence_ended``: its reopening was the first tell) breaks the run of silences from the opening
        before ``now``; else nothing. Its ``pages`` says so, and the reminders count it as the page it is,
        from the event, which retention never deletes while the incident is open (it deletes the silence once
        ended for the retention period). ``spans``: the incident's silences as ``silence_spans`` reads them
        now."""
        opened = next((e for e in timeline if e.kind == "opened"), None)
        if opened is None or any(e.kind == SILENCE_ENDED for e in timeline):
            return {}
        # Told when it was announced (a tick late, serve down then: a silence set since held it), where
        # the store says (``IncidentRow.announced_at``); else at the end of its announce delay.
        announced = session.scalar(select(IncidentRow.announced_at).where(IncidentRow.id == incident_id))
        told = announced_at(opened.at, announced, self._hold)
        unsilenced = unsilenced_at(told, spans)
        if unsilenced == told or any(unsilenced < end <= now for _, end in spans):
            return {}
        return {FIRST_TOLD: True}

    def _tell_silences_ending(self, now: datetime) -> None:
        """A ``silence_ending`` event for each open silenced incident whose silence has less than
        ``EXTENDABLE`` left, once for each end, unless its latest event was told that close to the end
        already (its message offers the extension then). Told silenced, so notifiers only edit the message in
        place. Whether it was told is read from the timeline the first time it is asked, so a restart (which
        forgets ``_ending_told``) decides alike."""
        due = []
        for incident_id in sorted(self._silenced_incidents):
            until = incident_silenced_until(self._silences, incident_id, now)
            if until is None or until - now >= EXTENDABLE or incident_id not in self._open:
                continue
            if self._ending_told.get(incident_id) != until:
                due.append((incident_id, until))
        if not due:
            return
        with self._sessions() as session, session.begin():
            batch = Batch(session, now)
            for incident_id, until in due:
                # The latest time on its timeline, not its last event's: an event added since may carry an
                # earlier time (an alert's), and a restart, which reads this anew, would decide otherwise
                # (restart fuzz seed 2142).
                last = session.scalar(
                    select(func.max(TimelineRow.at)).where(TimelineRow.incident_id == incident_id)
                )
                if last is not None and until - last < EXTENDABLE:
                    continue  # told that close to its end already: its message offers the extension
                by = sorted(
                    {
                        s.created_by
                        for s in self._silences
                        if s.incident_id == incident_id and s.ends_at == until
                    }
                )
                batch.event(
                    incident_id,
                    SILENCE_ENDING,
                    f'silence ends at {shown(until)} (silenced by {", ".join(by)}): "Extend silence 1 h" in'
                    f" Slack, or `gpuwarden incidents silence {incident_id} --for 1h`, extends it",
                    {"until": rfc3339(until)},
                    change=ChangeKind.UPDATED,
                )
        self._ending_told.update(due)  # after the commit: a failed one is tried again at the next tick
        self._notify(batch.changes)

    def _end_incident_silences(self, now: datetime) -> None:
        """Add the catch-up event to each open incident whose silence ended (see the module docstring)."""
        ended = {
            i for i in self._silenced_incidents if incident_silenced_until(self._silences, i, now) is None
        }
        live = sorted(i for i in ended if i in self._open)  # one resolved while silenced: no resolution sent
        batch = None
        if live:
            with self._sessions() as session, session.begin():
                batch = Batch(session, now)
                for incident_id in live:
                    row = session.get(IncidentRow, incident_id)
                    if row is None:
                        continue
                    events = session.scalars(
                        select(TimelineRow)
                        .where(TimelineRow.incident_id == incident_id)
                        .order_by(TimelineRow.seq)
                    ).all()
                    if resolved_at_end(session, incident_id, events):
                        continue  # nothing held back to tell: its reopening since pages as such
                    since = self._catch_up_since.get(incident_id)
                    spans = silence_spans(session, incident_id)
                    message, data, rose = catch_up(events, row.priority, since, spans=spans)
                    data.update(self._told_first(session, incident_id, events, now, spans))
                    row.updated_at = now
                    change = ChangeKind.PRIORITY_CHANGED if rose else ChangeKind.UPDATED
                    batch.event(incident_id, SILENCE_ENDED, message, data, change=change)
        self._silenced_incidents -= ended  # after the commit: a failed one is tried again at the next tick
        for incident_id in ended:
            self._catch_up_since.pop(incident_id, None)
            self._ending_told.pop(incident_id, None)
        if batch is not None:
            self._notify(batch.changes)


BESIDE_NAMED = 3  # faults beside a silence that its early end names; the rest are counted


def _early(whys: Sequence[str]) -> str:
    """Why a silence ended early: the faults beside it that came in, in order (the first few)."""
    named = list(whys[:BESIDE_NAMED])
    if len(whys) > BESIDE_NAMED:
        named.append(f"and {len(whys) - BESIDE_NAMED} more beside it")
    return "; ".join(named)

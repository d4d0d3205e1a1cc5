"""Telling listeners (the Slack outbox, webhooks) what changed, after each commit.

Every change is stored with its commit and deleted once told (``alerting.handoff``): a crash or a store
failure between the commit and the outbox's enqueue delays the message, it never loses it.

``IncidentAnnouncing`` (mixed into the engine) holds a new incident back for the announce delay, as
Alertmanager's group_wait does: one merged or resolved before then is never announced, and what changes
meanwhile folds into its announcement, but for a person's change, which announces it at once. With no
delay, one that the batch opening it also ends (merged into
another as the batch correlates) is not announced either: its "opened" would describe an incident already
closed, and only the incident that goes on speaks. The end of an incident never announced is still told,
``only_if_told``: a process that crashed before forgetting its "opened" may have handed that to the outbox.
After a restart, incidents a previous process may have announced are announced again first; listeners such as
the outbox dedupe them by the event's idempotency key. Not those the store says were announced
(``IncidentRow.announced_at``, ``reminders.was_announced``): only those held when it stopped, those whose
announcement's time it could not store (a crash just after the outbox took it: the outbox says when it did,
and that is stored, also for one merged or resolved before it is announced again), and, once, those stored
before migration 0019 (then stored as announced at the end of their delay, as the reminders read them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, select, update
from sqlalchemy.orm import Session, sessionmaker

from alerting.db import in_lists
from alerting.engine_lock import EngineLock
from alerting.event_state import incident_as_of
from alerting.handoff import NOTHING_ELSE, Change, Telling, forget, untold
from alerting.incident_index import OpenIncidents
from alerting.inventory import Inventory
from alerting.member import flapping_in, recommended_by
from alerting.outbox_tables import OutboxMessage, first_taken
from alerting.reminders import INSTANT, was_announced
from alerting.silences import Silence, incident_silenced_until
from alerting.store import IncidentNotFound, IncidentStore
from alerting.store_models import IncidentRow, TimelineRow, UntoldChangeRow
from alerting.subscriptions import ChangeKind, IncidentChange, IncidentListener
from alerting.titles import root_cluster
from gpuwarden.clock import Clock
from gpuwarden.model import Incident, IncidentState, TimelineEvent

logger = logging.getLogger(__name__)
# A change as told: its incident, kind and event, whether only to those told of the incident before, and
# what its transaction decided it is told with.
_Told = tuple[str, ChangeKind, TimelineRow, bool, Telling]
_TELL_AT_ONCE = 500  # stored changes read per round (after an outage thousands may wait)
# A person's change ends a held incident's hold: it is known to people, and theirs is told, not folded.
_PERSON_KINDS = frozenset({"acknowledged", "mitigating", "note"})


class IncidentAnnouncing:
    """The engine's listeners and held announcements; see the module docstring."""

    clock: Clock
    store: IncidentStore
    inventory: Inventory | None
    counters: dict[str, int]
    _lock: EngineLock  # the engine's (``alerting.engine_lock``)
    _listeners: list[IncidentListener]
    _open: OpenIncidents
    _silences: list[Silence]
    _hold: timedelta
    _unannounced: dict[str, datetime]  # held incidents: when they opened
    _announced: set[str]  # open incidents this process has announced
    _reannounce: set[str]  # held at start, announced by an earlier process maybe: announced again
    _sessions: sessionmaker[Session]
    _untold: bool  # committed changes may wait untold (at start, after a failure): told at the next notify
    _telling_failed: bool  # the last try to tell them failed (logged once with its traceback)

    # --- subscriptions --------------------------------------------------------------------------

    def subscribe(self, listener: IncidentListener) -> None:
        """Call ``listener`` after each committed change (and for changes committed but not told before)."""
        with self._lock:
            self._listeners.append(listener)
            self._untold = True  # what a process before this one committed but never told: at the next notify

    def _notify(self, changes: Sequence[tuple[str, ChangeKind, TimelineRow]]) -> None:
        """After a commit: tell listeners every committed change not told yet, this commit's included.

        The changes were stored with their commit (``alerting.handoff``); they are deleted once told. When
        telling fails (the store dropped, a listener raised), they stay and the next notify or tick tells
        them again: listeners dedupe by the event's idempotency key. Never raises: the commit stands.
        """
        if not self._listeners:
            self._tell([(c, NOTHING_ELSE) for c in changes])  # kept in the store for a process with listeners
            return
        if not changes and not self._untold:
            return
        self._untold = True
        try:
            while batch := untold(self._sessions, _TELL_AT_ONCE):
                self._tell([(u.change, u.telling) for u in batch])
                forget(self._sessions, batch)
        except Exception as exc:  # loop boundary: the changes stay stored, told again later
            self.counters["listener_errors"] += 1
            if not self._telling_failed:
                logger.exception("telling listeners of committed changes failed; told again later")
            else:
                logger.warning("telling listeners of committed changes failed again: %r", exc)
            self._telling_failed = True
            return
        if self._telling_failed:
            logger.info("committed changes told to listeners again")
        self._untold = self._telling_failed = False

    def _tell(self, changes: Sequence[tuple[Change, Telling]]) -> None:
        """Tell listeners, holding back new incidents for the announce delay (like Alertmanager's group_wait).

        An incident merged or resolved before its announcement is never announced, with no delay too (one
        that the batch that opened it ends): its end is told ``only_if_told``. Changes of a held incident
        fold into its announcement, but a person's (``_PERSON_KINDS``): it is announced, then told. Raises
        what a listener or the store raised, which and when each incident
        was announced or held left as they were: the changes stay stored, and telling them again decides
        afresh, as a process started then does from the store (an opening whose telling failed is not
        announced, restart fuzz seed 1502).
        """
        kept = (set(self._announced), dict(self._unannounced), set(self._reannounce))
        try:
            self._tell_changes(changes)
        except BaseException:
            self._announced, self._unannounced, self._reannounce = kept
            raise

    def _tell_changes(self, changes: Sequence[tuple[Change, Telling]]) -> None:
        """``_tell``'s work, which may leave the held and announced incidents half changed when it raises."""
        ending = (
            _ended_at_birth([c for c, _ in changes], self._announced) if self._hold <= timedelta(0) else set()
        )
        out: list[_Told] = []
        unseen: set[str] = set()  # held at start and resolved before this process announced them
        now = self.clock.now()
        for (incident_id, kind, event), telling in changes:
            if (
                kind is ChangeKind.OPENED
                and incident_id not in self._announced
                and (self._hold > timedelta(0) or incident_id in ending)
            ):
                self._unannounced[incident_id] = event.at
                continue
            opened_at = self._unannounced.get(incident_id)
            due = opened_at is not None and (now - opened_at >= self._hold or event.kind in _PERSON_KINDS)
            if self._hold > timedelta(0) and due:
                # Its delay has passed (or a person acted on it) and no tick announced it yet: announced at
                # this change, the change told after it, as one whose
                # announcement failed or that a process before this one held is (``_announce_due``), so a
                # restarted process, whose tick may not have come, tells the same. (With no delay, only one
                # its opening batch ended is held: it is never announced.)
                self._reannounce.add(incident_id)
            if kind is ChangeKind.OPENED and incident_id in self._reannounce:
                # Held at start to be announced again, its opening untold (the outbox was unreachable; with
                # no delay, the only opening told, not held): this telling is its announcement, as of its
                # opening, as the process that stored it would have told it.
                self._reannounce.discard(incident_id)
                self._unannounced.pop(incident_id, None)
            if (
                kind
                not in (ChangeKind.OPENED, ChangeKind.REOPENED)  # a reopening is told at once, never held
                and incident_id not in self._announced
                and incident_id not in self._unannounced
                and incident_id not in unseen
                and (opened := self._unannounced_opening(incident_id, event)) is not None
            ):
                # Neither announced nor held here, and the store says its opening never was: a tick's retry
                # found it resolved and dropped it (``_announce``), or a restart read only open incidents.
                # Held again to be announced first, as it is now (reopened since), or, resolved, told only
                # to those that know it, as a process that still held it does.
                self._unannounced[incident_id] = opened
                self._reannounce.add(incident_id)
            if incident_id in self._unannounced and incident_id not in self._reannounce:
                if kind is ChangeKind.RESOLVED:
                    del self._unannounced[incident_id]
                    out.append((incident_id, kind, event, True, telling))
            else:
                if incident_id in self._reannounce:
                    # Announced by the process before this one, maybe not (it stopped during the hold):
                    # announced again first (the outbox dedupes it), then the change. Silenced as of now,
                    # not of the change: a silence that ended since is in a live engine's list and not in a
                    # restarted one's (``stored_silences``); now, both find it ended.
                    self._emit(out)
                    out = []
                    self._announce(incident_id, now)
                    if incident_id not in self._announced:
                        # Resolved before it was announced (as a held one): told only to those that know it.
                        unseen.add(incident_id)
                if kind is ChangeKind.RESOLVED:
                    self._unannounced.pop(incident_id, None)
                if kind in (ChangeKind.OPENED, ChangeKind.REOPENED):  # a reopened one was announced
                    self._announced.add(incident_id)
                elif kind is ChangeKind.RESOLVED:
                    self._announced.discard(incident_id)
                out.append((incident_id, kind, event, incident_id in unseen, telling))
        self._emit(out)

    def _unannounced_opening(self, incident_id: str, event: TimelineRow) -> datetime | None:
        """When the incident opened, if the store says that opening was never handed to the listeners
        (``reminders.was_announced``) and no reopening told since, before ``event``, announced it (a
        reopening is told at once: restart fuzz seed 1829, whose end waited untold after such a reopening,
        and a restart had dropped the resolved incident from those it knew announced); else None."""
        with self._sessions() as session:
            row = session.execute(
                select(IncidentRow.opened_at, IncidentRow.announced_at).where(IncidentRow.id == incident_id)
            ).first()
            if row is None or was_announced(row.opened_at, row.announced_at):
                return None
            if event.seq is not None and _reopening_told(session, incident_id, event.seq):
                return None
        opened: datetime = row.opened_at
        return opened

    def _emit(self, changes: Sequence[_Told]) -> None:
        if not self._listeners or not changes:
            return
        cache: dict[str, Incident | None] = {}
        now = self.clock.now()
        taken: dict[str, datetime | None] = {}  # the openings told, and when a listener took them before
        for incident_id, kind, event, only_if_told, telling in changes:
            if incident_id not in cache:
                try:
                    cache[incident_id] = self.store.get(incident_id)
                except IncidentNotFound:  # pruned by retention since: nothing left to tell
                    cache[incident_id] = None
            incident = cache[incident_id]
            if incident is None:
                continue
            told = _event_told(incident.timeline, event) or incident.timeline[-1]
            recommended, flapping = self._advice(incident, told)
            change = IncidentChange(
                kind,
                incident_as_of(incident, told),  # not as a later change told with it left it
                told,
                recommended,
                incident_silenced_until(self._silences, incident_id, now),
                flapping,
                only_if_told,
                root_cluster(incident.root_cause.target, self.inventory),
                _repeat(incident.timeline, told),
                merging=telling.merging,
                also=telling.also,
                folded=telling.folded,
            )
            before = self._call_listeners(change)
            if kind is ChangeKind.OPENED:
                taken.setdefault(incident_id, before)
        self._store_announced(taken)

    def _recommended(self, incident_id: str) -> tuple[str, ...]:
        """What the incident's firing alerts recommend, the most drastic first ("ignore" is no advice)."""
        inc = self._open.get(incident_id)
        return recommended_by(inc.members.values()) if inc is not None else ()

    def _flapping(self, incident_id: str) -> tuple[str, ...]:
        """The names of the incident's flapping alerts (empty once it is resolved)."""
        inc = self._open.get(incident_id)
        return flapping_in(inc.members.values()) if inc is not None else ()

    def _advice(self, incident: Incident, told: TimelineEvent) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What the incident's alerts recommended and which flapped, as of ``told``: an incident merged into
        another since (in the batch told, or before a restart) is no longer open, and its "merged into"
        event kept what they were then; at that event and after, nothing (it is resolved)."""
        if incident.id in self._open:
            return self._recommended(incident.id), self._flapping(incident.id)
        end = next((e for e in reversed(incident.timeline) if e.kind == "merged" and "into" in e.data), None)
        if end is None or end is told or incident.timeline.index(told) > incident.timeline.index(end):
            return (), ()
        return tuple(end.data.get("recommended", ())), tuple(end.data.get("flapping", ()))

    def _call_listeners(self, change: IncidentChange) -> datetime | None:
        """Every listener hears of the change; then what one raised is raised (the change is told again).
        When a listener had it already (told again after a crash), the earliest time one says it took it."""
        failed: Exception | None = None
        taken: list[datetime] = []
        for listener in list(self._listeners):
            try:
                before = listener(change)
            except Exception as exc:  # noqa: BLE001 - the others are still told; raised below
                failed = exc
                continue
            if isinstance(before, datetime):
                taken.append(before)
        if failed is not None:
            raise failed
        return min(taken, default=None)

    def _announce_due(self, now: datetime) -> None:
        """Announce held incidents whose delay has passed, as they are now; one that fails is tried again at
        the next tick, or at its next change if that comes first (announced, then the change told), as a
        process started then would do: it cannot know whether one whose delay passed was announced. When
        they were announced is stored once for all of them (``_store_announced``); when that fails, those
        are announced again (the outbox dedupes them) to store it. One held since "after" now (the wall clock
        was set back since) is held from now: its page comes the delay after the step, not the step later."""
        self._unannounced.update(dict.fromkeys([i for i, at in self._unannounced.items() if at > now], now))
        due = {i: at for i, at in self._unannounced.items() if now - at >= self._hold}
        told: dict[str, datetime | None] = {}
        try:
            for incident_id in due:
                self._announce(incident_id, now, told)
        except Exception as exc:  # noqa: BLE001 - loop boundary: still held, announced at a later tick
            self.counters["listener_errors"] += 1
            logger.warning("announcing held incidents failed; tried again at the next tick: %r", exc)
            self._reannounce.update(i for i in due if i in self._unannounced)
        try:
            self._store_announced(told)
        except Exception as exc:  # noqa: BLE001 - loop boundary: announced again at a later tick
            self.counters["listener_errors"] += 1
            logger.warning("storing when held incidents were announced failed; announced again: %r", exc)
            for incident_id in told:
                self._unannounced[incident_id] = due[incident_id]
                self._reannounce.add(incident_id)

    def _announce(
        self, incident_id: str, now: datetime, told: dict[str, datetime | None] | None = None
    ) -> None:
        """Tell listeners a held incident opened, as it is now (unless it resolved meanwhile: then it is not
        announced, and an "opened" of it told again later is held, not sent; when the outbox took it before,
        that is stored, ``_store_taken``); it stays held when that
        raises. When it was told is stored at once, or left to the caller that gives ``told`` (added to it,
        with when a listener took it before, if one did: ``_store_announced``)."""
        announced = True
        if self._listeners:
            incident = self.store.get(incident_id)
            announced = incident.state is not IncidentState.RESOLVED
            if not announced:
                self._store_taken(incident_id)
            else:
                opened = next((e for e in incident.timeline if e.kind == "opened"), incident.timeline[0])
                silenced_until = incident_silenced_until(self._silences, incident_id, now)
                before = self._call_listeners(
                    IncidentChange(
                        ChangeKind.OPENED,
                        incident,
                        opened,
                        self._recommended(incident_id),
                        silenced_until,
                        self._flapping(incident_id),
                        root_cluster=root_cluster(incident.root_cause.target, self.inventory),
                    )
                )
                if told is None:
                    self._store_announced({incident_id: before})
                else:
                    told[incident_id] = before
        del self._unannounced[incident_id]
        self._reannounce.discard(incident_id)
        if announced:
            self._announced.add(incident_id)

    def _store_taken(self, incident_id: str) -> None:
        """Store when the outbox first took the opening of a held incident that resolved (merged into
        another, most often) before it was announced again, if it did (``taken_by_outbox``): the store
        failed, or serve died, between that and ``_store_announced``. Its ``announced_at`` stayed NULL, read
        as never handed to the outbox (``reminders.was_announced``), though it paged."""
        with self._sessions() as session, session.begin():
            for one, at in taken_by_outbox(session, [incident_id]).items():
                _stamp(session, [one], at)

    def _store_announced(self, taken: Mapping[str, datetime | None]) -> None:
        """Store when the listeners were first told these incidents opened (now, after they heard it; told
        again, a restart's announcement that the outbox dedupes, it keeps the first): their opening's page,
        which the reminders count from (``reminding.stored_pages``), not the end of the announce delay, which
        is earlier when serve was down then or a tick came late. ``taken``: per incident, when a listener
        says it took the opening before (the outbox had it: a crash came between its enqueue and this), else
        None (now). Raises what the store raised: the opening is told again, as when a listener fails."""
        if not taken:
            return
        now = self.clock.now()
        by_time: dict[datetime, list[str]] = {}  # now for most; a crash's few keep the outbox's times
        for incident_id, before in taken.items():
            by_time.setdefault(now if before is None else before, []).append(incident_id)
        with self._sessions() as session, session.begin():
            for at, incident_ids in by_time.items():
                for chunk in in_lists(incident_ids):
                    if not _stamp(session, chunk, at):  # some had a time: perhaps stored before 0019
                        _settle_upgraded(session, chunk, self._hold)


def taken_by_outbox(session: Session, incident_ids: Sequence[str]) -> dict[str, datetime]:
    """When the outbox first took a change of each of these incidents (stored with no ``announced_at``):
    their opening, the first it takes of one (``outbox_tables.first_taken``: not a message discarded
    unsent). The store failed, or serve died, just after the outbox took it
    (``IncidentAnnouncing._store_announced``): it paged then. None for one the outbox never took (held: it
    paged nobody)."""
    taken: dict[str, datetime] = {}
    for chunk in in_lists(incident_ids):
        taken.update(first_taken(session, OutboxMessage.incident_id.in_(chunk)))
    return taken


def _settle_upgraded(session: Session, incident_ids: Sequence[str], hold: timedelta) -> None:
    """Of the incidents just told opened, store those stored before migration 0019 (``announced_at`` their
    opening's time: told or not, not known; offered to the listeners again at each start, the outbox
    dropping the repeat) as announced at the end of their announce delay, as the reminders read them already
    (``reminders.announced_at``; ``INSTANT`` after the opening with no delay): told now, no start after
    this one offers them again, and they are reminded of as before."""
    upgraded = (IncidentRow.id.in_(incident_ids), IncidentRow.announced_at == IncidentRow.opened_at)
    _stamp_after_opening(session, upgraded, max(hold, INSTANT))


def _stamp(session: Session, incident_ids: Sequence[str], at: datetime) -> bool:
    """Store ``at`` as the announcement of those of the incidents that have none yet; of one that opened at
    ``at`` or later (no announce delay under a clock that did not move, or a wall clock set back), the
    microsecond after its opening: its opening's own time reads as stored before migration 0019
    (``reminders.was_announced``), offered to the listeners again at every start.

    One UPDATE when it stamps them all (they opened before ``at``: an announce delay passed). Not one
    statement for every case: that would compute ``opened_at`` plus a microsecond in SQL, which SQLite cannot
    but by splicing the text SQLAlchemy stores (its date functions drop what is below a millisecond, and a
    ``julianday`` double steps about 40 µs today); the few left are read and stamped one by one. True when
    the UPDATE stamped them all: none had a time already (``_settle_upgraded`` has nothing to look at)."""
    unstamped = (IncidentRow.id.in_(incident_ids), IncidentRow.announced_at.is_(None))
    stamped = session.execute(
        update(IncidentRow).where(*unstamped, IncidentRow.opened_at < at).values(announced_at=at)
    )
    if cast("CursorResult[Any]", stamped).rowcount == len(set(incident_ids)):  # ``in_lists`` pads them
        return True
    _stamp_after_opening(session, unstamped, INSTANT)
    return False


def _stamp_after_opening(session: Session, where: Sequence[ColumnElement[bool]], after: timedelta) -> None:
    """Store each incident that ``where`` selects as announced ``after`` its opening: read and stamped one
    by one (why not in one statement: ``_stamp``)."""
    read = select(IncidentRow.id, IncidentRow.opened_at).where(*where)
    for incident_id, opened_at in session.execute(read).all():  # all read before the first UPDATE
        session.execute(
            update(IncidentRow).where(IncidentRow.id == incident_id).values(announced_at=opened_at + after)
        )


def _event_told(timeline: Sequence[TimelineEvent], event: TimelineRow) -> TimelineEvent | None:
    """The event of ``timeline`` a change tells: the one with its time, kind, message and data (one
    transaction writes several events of a kind at one time: a priority set at the opening and raised as the
    same POST merged another incident in); the first of its time and kind for a change stored before its
    event's row was (migration 0010), whose message is not known. Its row, where both name one: of events
    alike in all of those too, the one it is."""
    same = [e for e in timeline if e.at == event.at and e.kind == event.kind]
    if event.seq is not None:
        found = next((e for e in same if e.seq == event.seq), None)
        if found is not None:
            return found
    if event.message:
        return next((e for e in same if e.message == event.message and e.data == event.data), None)
    return same[0] if same else None


def _repeat(timeline: Sequence[TimelineEvent], told: TimelineEvent) -> int:
    """How many events before ``told`` on ``timeline`` are alike in time, kind and message
    (``IncidentChange.repeat``)."""
    count = 0
    for e in timeline:
        if e is told:
            return count
        count += e.at == told.at and e.kind == told.kind and e.message == told.message
    return 0


def _ended_at_birth(changes: Sequence[tuple[str, ChangeKind, TimelineRow]], announced: set[str]) -> set[str]:
    """Incidents not announced yet that these changes open and then resolve (merged, most often)."""
    opened: set[str] = set()
    ended: set[str] = set()
    for incident_id, kind, _ in changes:
        if kind is ChangeKind.OPENED and incident_id not in announced:
            opened.add(incident_id)
        elif kind is ChangeKind.RESOLVED and incident_id in opened:
            ended.add(incident_id)
    return ended


def _reopening_told(session: Session, incident_id: str, before: int) -> bool:
    """Whether the incident's last opening or reopening before timeline event ``before`` is a reopening that
    was told (no change of it waits untold, ``alerting.handoff``)."""
    last = session.execute(
        select(TimelineRow.kind, TimelineRow.seq)
        .where(
            TimelineRow.incident_id == incident_id,
            TimelineRow.kind.in_(("opened", "reopened")),
            TimelineRow.seq < before,
        )
        .order_by(TimelineRow.seq.desc())
        .limit(1)
    ).first()
    if last is None or last.kind != "reopened":
        return False
    waiting = select(UntoldChangeRow.id).where(
        UntoldChangeRow.incident_id == incident_id, UntoldChangeRow.event_seq == last.seq
    )
    return session.execute(waiting.limit(1)).first() is None

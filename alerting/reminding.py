"""Reminding of an incident that fires steadily: the engine's tick pages again once its last page is old.

An incident whose alert fires without a break never resolves, so never reopens: a reopening's reminder
(``alerting.reminders``) never comes, and a P0 nobody acknowledged at 23:00 was told once all night, while
Alertmanager notifies a firing group again every ``repeat_interval`` (4 h). So the tick pages an open incident
again, told as a ``reminder`` event ("still firing 4h after the last page, not acknowledged: reminding";
"still flapping" when what of it is not muted only flaps), when something of it fires or flaps that
nothing mutes (a silence, window or inhibition of that alert: Alertmanager repeats no muted alert), no
silence holds it, its last page (an opening's: when it was announced) is
``alerting.remind_after_seconds`` old or older, nobody took it up since (``reminders.TAKEN_UP``) and it
is not still acknowledged or mitigating from before (an escalation pages without changing its state). The
reminder is a page: the next comes that long after it. Every priority reminds (every one pages at its
opening; a webhook's ``priorities`` filters them as it filters the rest).

Decided from the stored timeline (``reminders.reminder_due``, as a held reopening's reminder is), in the
tick's own transaction, and told through the outbox once. The tick does not read every incident's
timeline: each open incident has a time before which no reminder can be due (its opening, or its last page,
plus the delay; a check that finds it taken up, plus the delay, as any later page is later still; an
incident that absorbs another, at once, as the other's pages and take-ups become its own), kept in a heap,
and only those whose time came are read. One whose time came but that something holds back (a silence of
it, every firing alert muted, nothing firing) is looked at again when that may end: its silence's end, the
end of the silences muting its alerts, or at once when its members, the silences that held it (one that
may mute less: ``muting_less``; a silence set or extended elsewhere wakes none), an inhibiting alert or
(for a maintenance window) the inventory change (``ParkedCheck``); not at every tick. A restarted serve
starts from each incident's opening, so decides alike: an opening's page is when the listeners (the outbox)
were first told it, stored (``IncidentRow.announced_at``), not the end of its announce delay, which is
earlier when serve was down then or a tick came late.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting.announcing import taken_by_outbox
from alerting.batch import Batch, OpenIncident
from alerting.db import in_lists
from alerting.muting import MuteTracking
from alerting.reminders import (
    READ_KINDS,
    REMINDER,
    TOLD_AT,
    announced_at,
    last_page,
    steady_text,
    unsilenced_at,
)
from alerting.silences import Silence, SilenceKind
from alerting.store import MERGED
from alerting.store_models import IncidentRow, SilenceRow, TimelineRow
from alerting.subscriptions import ChangeKind
from gpuwarden.model import IncidentState

_Event = tuple[str, datetime, Mapping[str, object]]


@dataclass(frozen=True, slots=True)
class ParkedCheck:
    """An open incident past its check time that something held back: looked at again at ``until`` (epoch
    seconds; infinite when no time ends it), or at once when what held it back may have let go: a change of
    its members, a change of one of the ``silences`` that held it (their ids) by which it may mute less
    (``muting_less``), and, where it says so, an inhibiting alert's end (``inhibited``) or a new inventory
    (``placed``: a maintenance window muted a member, as placed in the inventory)."""

    when: float  # when it was last looked at (its check time), pushed again when something wakes it
    until: float
    inhibited: bool
    placed: bool
    silences: tuple[str, ...] = ()


class SteadyReminding(MuteTracking):
    """The tick's reminders of incidents that fire steadily; mixed into ``IncidentEngine``."""

    _remind_after: float  # ``alerting.remind_after_seconds``
    _hold: timedelta  # ``alerting.announce_delay_seconds``
    # Per open incident, the time (epoch seconds) before which no reminder of it can be due, and the heap of
    # those times (an entry whose time is no longer the incident's is stale, skipped when popped).
    _remind_checks: dict[str, float]
    _remind_heap: list[tuple[float, str]]
    # Open incidents held back when looked at (``ParkedCheck``), and the silences, inventory and inhibitor
    # (with its count of released sources) they were judged with.
    _parked: dict[str, ParkedCheck]
    _parked_with: tuple[list[Silence], object, object, int] | None
    _rebuild_after_failure: Callable[[], None]  # the engine's
    # The clock at the last tick's reminders, and, per open incident whose last page was stored after the
    # time now when read (the wall clock was set back since), that page's stored time and the time it counts
    # as (``_page_read``); in memory only.
    _remind_seen: datetime | None
    _read_ahead: dict[str, tuple[datetime, datetime]]

    def _remind_from(self, incident_id: str, opened: datetime) -> None:
        """An incident (re)opened in memory that opened at ``opened``: no reminder is due before its opening
        is the delay old (its last page is that or later); an opening stored after the time now (the clock
        was set back since) counts as now."""
        at = min(opened, self.clock.now())
        self._check_reminder_at(incident_id, at + timedelta(seconds=self._remind_after))

    def _page_read(self, incident_id: str, last: datetime, now: datetime) -> datetime:
        """When the incident's last page (stored at ``last``) counts as made: a page stored after ``now``
        (the wall clock was set back since: an NTP correction, a VM restored) as at ``now``, and so at every
        later check until the incident pages again, so that its reminder comes the delay after the step, not
        the step later; never before the delay after the page as the clock read it, nor twice for it."""
        stored, read = self._read_ahead.pop(incident_id, (last, last))
        if stored != last:  # a later page (or take-up) since
            read = last
        read = min(read, now)
        if read < last:
            self._read_ahead[incident_id] = (last, read)
            if len(self._read_ahead) > len(self._open):  # resolved or merged away since
                self._read_ahead = {i: r for i, r in self._read_ahead.items() if i in self._open}
        return read

    def _after_clock_set_back(self, now: datetime) -> None:
        """Look at every open incident at once when the clock reads earlier than at the last tick (set back:
        an NTP correction, a VM restored): their checks, counted from pages stored ahead of the clock, lie the
        step later, and a page read while still stored after the time now counts as made now
        (``_page_read``)."""
        seen, self._remind_seen = self._remind_seen, now
        if seen is None or now >= seen:
            return
        for incident_id in [*self._remind_checks, *self._parked]:
            self._look_at(incident_id, now.timestamp())

    def _check_reminder_at(self, incident_id: str, at: datetime) -> None:
        """No reminder of the incident can be due before ``at``: look at it at the first tick from then."""
        self._look_at(incident_id, at.timestamp())

    def _look_at(self, incident_id: str, when: float) -> None:
        if self._remind_after <= 0:
            return  # never reminds: nothing to look at
        self._parked.pop(incident_id, None)
        self._remind_checks[incident_id] = when
        heapq.heappush(self._remind_heap, (when, incident_id))
        if len(self._remind_heap) > 2 * len(self._remind_checks) + 64:
            # Stale entries (looked at since, parked again) are skipped when popped, but a parked incident
            # woken by each change of a silence holding it (every silence change, before fix/remind4) left
            # one more each time until its silence's end: 10,000 parked and a hundred changes, a million
            # entries. Keep only the current ones.
            self._remind_heap = [(at, one) for one, at in self._remind_checks.items()]
            heapq.heapify(self._remind_heap)

    def _reset_reminder_checks(self, opened: Iterable[tuple[str, datetime]]) -> None:
        """At a rebuild: each open incident (id, opened at) looked at once its opening is the delay old."""
        self._remind_checks, self._remind_heap, self._parked = {}, [], {}
        self._open.changed_for_reminders()  # all looked at anew
        for incident_id, at in opened:
            self._remind_from(incident_id, at)

    def _held_back(self, inc: OpenIncident, now: datetime, when: float) -> ParkedCheck | None:
        """What holds ``inc`` back from a reminder now, if anything: a silence of it (until it ends); every
        member that fires (or flaps) muted by a silence or window (Alertmanager repeats no notification of a
        muted alert, though it stays the incident's member: until the first of them may be free, the end of
        the last silence muting it) or an inhibition (until its source ends); nothing firing (it waits out
        its quiet period: until something of it fires again)."""
        if self._silences:
            holding = self._indexed_silences().holding_incident(inc.id, now)
            if holding:
                until = max(s.ends_at for s in holding).timestamp()
                return ParkedCheck(when, until, False, False, tuple(s.id for s in holding))
        until, inhibited, placed = math.inf, False, False
        by: dict[str, None] = {}  # the ids of the silences and windows that mute its members
        for fp, m in reversed(inc.members.items()):  # the latest first, as ``live`` asks
            if not (m.firing or m.flapping):
                continue
            labels = dict(m.labels)
            muting = self._muting(labels, inc.id, now)
            if muting:
                until = min(until, max(s.ends_at.timestamp() for s in muting))
                placed = placed or any(s.kind is SilenceKind.MAINTENANCE for s in muting)
                by.update(dict.fromkeys(s.id for s in muting))
            elif self._inhibitor.inhibited_by(fp, labels) is not None:
                inhibited = True
            else:
                return None  # fires unmuted
        return ParkedCheck(when, until, inhibited, placed, tuple(by))

    def _only_flaps(self, inc: OpenIncident, now: datetime) -> bool:
        """Whether every alert of ``inc`` that fires unmuted flaps (none fires steadily): its reminder says
        "still flapping", not "still firing"."""
        return not any(
            m.firing and not m.flapping and self._muted_by(fp, dict(m.labels), inc.id, now) is None
            for fp, m in inc.members.items()
        )

    def _park(self, incident_id: str, parked: ParkedCheck, now: datetime) -> None:
        """Look at a held-back incident again when what holds it back may end (``_wake_parked``, else); at
        the next tick if that end has passed already (an inconsistency): looked at again at ``now``, the
        tick that parked it would pop it again, and again, for ever."""
        if parked.until <= now.timestamp():
            parked = replace(parked, until=math.nextafter(now.timestamp(), math.inf))
        if parked.until < math.inf:
            self._look_at(incident_id, parked.until)
        else:
            self._remind_checks.pop(incident_id, None)  # its heap entries are stale
        self._parked[incident_id] = parked

    def _wake_parked(self) -> None:
        """Look again at once at the parked incidents that what changed since may free: those whose members
        changed; those a silence held that may mute less now (``muting_less``: one set or extended mutes only
        more, so frees none); those an inhibition held when a source ended; those a maintenance window held
        when the inventory changed."""
        changed = self._open.changed_for_reminders()
        now = (self._silences, self.inventory, self._inhibitor, self._inhibitor.released)
        before, self._parked_with = self._parked_with, now
        if not self._parked:
            return
        if len(self._parked) > len(self._open):  # resolved or merged away since (no heap entry forgets them)
            self._parked = {i: p for i, p in self._parked.items() if i in self._open}
        if before is None:
            woken = list(self._parked.items())
        else:
            lost = set() if before[0] is now[0] else muting_less(before[0], now[0])
            inventory = before[1] is not now[1]
            inhibitions = before[2] is not now[2] or before[3] != now[3]
            woken = [
                (i, p)
                for i, p in self._parked.items()
                if i in changed
                or (lost and not lost.isdisjoint(p.silences))
                or (p.placed and inventory)
                or (p.inhibited and inhibitions)
            ]
        for incident_id, parked in woken:  # listed first: ``_look_at`` unparks each
            self._look_at(incident_id, parked.when)

    def _remind_steady(self, now: datetime) -> None:
        """Page again, as a reminder, each open incident that fires steadily and is due (module docstring)."""
        if self._remind_after <= 0:
            return
        self._after_clock_set_back(now)
        self._wake_parked()
        due: list[str] = []
        flapping: dict[str, bool] = {}
        while self._remind_heap and self._remind_heap[0][0] <= now.timestamp():
            when, incident_id = heapq.heappop(self._remind_heap)
            if self._remind_checks.get(incident_id) != when or incident_id in flapping:
                # Looked at since, or set again; or due already: a second entry of one time (a parked
                # incident woken and parked again until the same end, two merges into it in one batch).
                continue
            inc = self._open.get(incident_id)
            if inc is None:
                del self._remind_checks[incident_id]  # resolved or merged away
                continue
            parked = self._held_back(inc, now, when)
            if parked is None:
                due.append(incident_id)
                flapping[incident_id] = self._only_flaps(inc, now)
            else:
                self._park(incident_id, parked, now)  # looked at again when that may end (in memory only)
        if not due:
            return
        after = timedelta(seconds=self._remind_after)
        checks: list[tuple[str, datetime]] = []
        try:
            with self._sessions() as session, session.begin():
                batch = Batch(session, now)
                hold = self._hold.total_seconds()
                timelines = stored_pages(session, due, hold)
                rows = _still_open(session, due)  # of those not resolved by a commit whose answer was lost
                # In the order they opened, not the heap's (its times differ after a restart): told alike.
                for row in sorted(rows, key=lambda r: (r.opened_at, r.id)):
                    incident_id = row.id
                    last, taken_up = last_page(timelines.get(incident_id, ()), row.opened_at, hold)
                    last = self._page_read(incident_id, last, now)
                    age = (now - last).total_seconds()
                    # Still acknowledged (mitigating) though something paged since: taken up all the same
                    # (only an opening or a reopening sets it triggered again, and either looks again).
                    taken_up = taken_up or row.state != IncidentState.TRIGGERED.value
                    if taken_up or age < self._remind_after:
                        # Not due before the delay after its last page; taken up, before the delay after now
                        # (a later page is later than now).
                        checks.append((incident_id, (now if taken_up else last) + after))
                        continue
                    row.updated_at = now
                    message = steady_text(age, flapping[incident_id])
                    batch.event(incident_id, REMINDER, message, {"reminder": age}, change=ChangeKind.UPDATED)
                    checks.append((incident_id, now + after))
        except Exception:
            self._rebuild_after_failure()  # the COMMIT may have gone through: as the store has it
            raise
        for incident_id, at in checks:  # after the commit: a failed one is looked at again
            self._check_reminder_at(incident_id, at)
        self._notify(batch.changes)


def muting_less(before: Sequence[Silence], after: Sequence[Silence]) -> set[str]:
    """The ids of the silences of ``before`` that may mute less in ``after``: gone from it, ending sooner
    (expired, shortened), starting later, or matching otherwise (matchers, kind, incident; an update that
    changes them takes over with a new id, the old one expired). A silence added, or extended, mutes only
    more: it frees nothing that was held."""
    kept = {s.id: s for s in after}
    lost: set[str] = set()
    for old in before:
        new = kept.get(old.id)
        if new is old:
            continue
        if (
            new is None
            or new.ends_at < old.ends_at
            or new.starts_at > old.starts_at
            or (new.matchers, new.kind, new.incident_id) != (old.matchers, old.kind, old.incident_id)
        ):
            lost.add(old.id)
    return lost


def _still_open(session: Session, incident_ids: list[str]) -> list[IncidentRow]:
    """The rows of the incidents that are still open, read many at a time (``in_lists``): the reminder
    reads when each opened and its state, and stamps the one it reminds of."""
    rows: list[IncidentRow] = []
    for chunk in in_lists(incident_ids):
        query = select(IncidentRow).where(
            IncidentRow.id.in_(chunk), IncidentRow.state != IncidentState.RESOLVED.value
        )
        rows.extend(session.scalars(query))
    return rows


def stored_pages(session: Session, incident_ids: list[str], hold: float) -> dict[str, list[_Event]]:
    """What ``reminders.last_page`` reads of each incident, newest first: its stored events of
    ``READ_KINDS``, and those of the incidents merged into it (their pages and take-ups were of the fault it
    now holds), each opening with when it was told unsilenced (``reminders.TOLD_AT``: when it was announced,
    its ``announced_at``, or, for one stored without it (announced with no listener; before migration 0019,
    which set its opening's time), after the announce delay, ``hold`` seconds; or, when a silence of the
    incident held it then, as that silence ended: the opening paged nobody, and the channel first heard of
    it then), but the opening of one merged before that, or merged in with no ``announced_at`` at all
    (``reminders.was_announced``) that the outbox never took (``announcing.taken_by_outbox``; stored
    with it now, ``IncidentAnnouncing._store_taken``, but not by a release before this one): never told,
    it paged nobody."""
    absorbed: dict[str, str] = {}  # incident merged into one of ``incident_ids`` -> that one
    for chunk in in_lists(incident_ids):
        query = select(IncidentRow.id, IncidentRow.merged_into).where(IncidentRow.merged_into.in_(chunk))
        absorbed.update((one, into) for one, into in session.execute(query) if into is not None)
    found: dict[str, list[tuple[int, str, _Event]]] = defaultdict(list)
    merged_at: dict[str, datetime] = {}
    announced: dict[str, datetime] = {}  # when each opening was announced, where the store says (0019)
    silenced: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)  # the incident silences
    for chunk in in_lists([*incident_ids, *absorbed]):
        events = select(
            TimelineRow.incident_id, TimelineRow.seq, TimelineRow.kind, TimelineRow.at, TimelineRow.data
        ).where(TimelineRow.incident_id.in_(chunk), TimelineRow.kind.in_((*READ_KINDS, MERGED)))
        for incident_id, seq, kind, at, data in session.execute(events):
            if kind != MERGED:
                found[absorbed.get(incident_id, incident_id)].append((seq, incident_id, (kind, at, data)))
            elif incident_id in absorbed and "into" in data:
                merged_at[incident_id] = at
        announcements = select(IncidentRow.id, IncidentRow.announced_at).where(
            IncidentRow.id.in_(chunk), IncidentRow.announced_at.is_not(None)
        )
        announced.update((one, at) for one, at in session.execute(announcements) if at is not None)
        held = select(SilenceRow.incident_id, SilenceRow.starts_at, SilenceRow.ends_at).where(
            SilenceRow.incident_id.in_(chunk)
        )
        for one, starts_at, ends_at in session.execute(held):
            if one is not None:
                silenced[one].append((starts_at, ends_at))
    announced.update(taken_by_outbox(session, [i for i in merged_at if i not in announced]))
    delay = timedelta(seconds=hold)

    def as_told(incident_id: str, event: _Event) -> _Event | None:
        kind, at, data = event
        if kind != "opened":
            return event
        end = merged_at.get(incident_id)  # of an incident merged in; None for the incident itself
        if end is not None and incident_id not in announced:
            # Merged in, never announced (held, by a serve that stopped; no outbox row): it paged nobody.
            return None
        told = unsilenced_at(
            announced_at(at, announced.get(incident_id), delay), silenced.get(incident_id, ())
        )
        return (kind, at, {**data, TOLD_AT: told}) if end is None or told < end else None

    pages: dict[str, list[_Event]] = {}
    for owner, stored in found.items():
        told = (as_told(one, e) for _, one, e in sorted(stored, key=lambda e: -e[0]))
        pages[owner] = [e for e in told if e is not None]
    return pages

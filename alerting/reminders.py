"""Reminders: a reopening held as cycling or flapping pages after all once the incident's last page is old.

A reopening that only repeats its incident's resolve / reopen cycle, or the flap that made its alert flapping,
pages nobody (``alerting.flapping.repeats_reopening``). Held for as long as it cycles, a fault coming back all
night paged once, at 23:00; Alertmanager notifies a firing group again every ``repeat_interval`` (4 h by
default). So such a reopening pages when the incident's last page is ``alerting.remind_after_seconds`` old or
older, told as a reminder, unless someone acknowledged (or took up) the incident since that page. Which events
paged is read from the stored timeline (``paged``), the decision stored on the reopening's event: a restarted
serve decides alike, and the outbox tells it once. An incident that fires steadily, never reopening, is
reminded of by the engine's tick (``alerting.reminding``), by the same rule: its ``reminder`` event pages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta

from alerting.outcomes import duration_text

# A silence's end, with what happened meanwhile (``alerting.muting`` writes it; reminders and notifiers read
# it): named here, where both may import it, muting importing this module.
SILENCE_ENDED = "silence_ended"
# Timeline kinds whose data say "from" and "to" priorities: a rise is an escalation, which pages.
PRIORITY_MOVES = frozenset({"priority", SILENCE_ENDED})
# Timeline kinds by which someone took the incident up (``alerting.lifecycle``): it is not reminded after.
TAKEN_UP = frozenset({"acknowledged", "remediation_approved", "mitigating"})
# The tick's reminder of an incident still firing (``alerting.reminding``): it pages.
REMINDER = "reminder"
# Every timeline kind ``reminder_due`` reads: those that may have paged, and those that take it up.
READ_KINDS = tuple(sorted(PRIORITY_MOVES | TAKEN_UP | {"opened", "reopened", REMINDER}))
# Set on an opening's data as read (``reminding.stored_pages``), never stored there: when it was told
# unsilenced, its announcement (``IncidentRow.announced_at``, else the end of the announce delay), which a
# silence of the incident holding it then puts off to that silence's end.
TOLD_AT = "told_at"
# Stored on a ``silence_ended`` event that is the first the channel hears of its incident (its opening was
# told while a silence set within the announce delay held it: Slack posts the incident's message then): a
# page, when it was told (``alerting.muting``).
FIRST_TOLD = "first_told"


# How long after its opening an announcement is stored when it came in the instant the incident opened (no
# announce delay under a clock that did not move; a wall clock set back; one of before migration 0019 with
# no delay, ``announcing._settle_upgraded``): its opening's own time reads as stored before 0019. Read as
# the opening's time (``announced_at``).
INSTANT = timedelta(microseconds=1)


def announced_at(opened: datetime, announced: datetime | None, hold: timedelta) -> datetime:
    """When an opening at ``opened`` was announced: its stored ``IncidentRow.announced_at`` (``INSTANT``
    after it: at its opening), or the end of its announce delay (``hold``) where the store does not know
    (NULL: not announced, or with no listener; its ``opened_at``: announced before migration 0019, which set
    that)."""
    if announced is None or not was_announced(opened, announced):
        return opened + hold
    return opened if announced - opened <= INSTANT else announced


def was_announced(opened: datetime, announced: datetime | None) -> bool:
    """Whether the store says an opening at ``opened`` was handed to the listeners: its ``announced_at`` is
    after it. NULL: never (held, merged or resolved before its delay ended, or no listener); ``opened``
    itself: stored before migration 0019, which set that for every incident, told or not (not known); one
    told in the instant it opened is stored a microsecond after it (``announcing._stamp``)."""
    return announced is not None and announced > opened


def held_reopening(data: Mapping[str, object]) -> bool:
    """Whether a reopening's event says it pages nobody: the flap that made its alert flapping, or a repeat
    of the incident's resolve / reopen cycle (``alerting.flapping.repeats_reopening``), not a reminder."""
    return bool(data.get("flapping") or data.get("cycling")) and not data.get("reminder")


def rose(data: Mapping[str, object]) -> bool:
    """Whether an event's ``from`` and ``to`` priorities say it became more urgent (P0 is the most)."""
    before, after = data.get("from"), data.get("to")
    return isinstance(before, str) and isinstance(after, str) and after < before


def paged(kind: str, data: Mapping[str, object]) -> bool:
    """Whether a timeline event paged: the opening, a reopening not held (a reminder included), an
    escalation (a priority change, or a silence's end, to a more urgent priority) but one told while a
    silence held the incident (its event says ``silenced``: the silence's end pages for it), the tick's
    reminder, a silence's end that first told the incident (``FIRST_TOLD``)."""
    if kind in ("opened", REMINDER):
        return True
    if kind == SILENCE_ENDED and data.get(FIRST_TOLD):
        return True
    if kind == "reopened":
        return not held_reopening(data)
    return kind in PRIORITY_MOVES and rose(data) and not data.get("silenced")


def last_page(
    events: Iterable[tuple[str, datetime, Mapping[str, object]]], opened: datetime, hold: float = 0.0
) -> tuple[datetime, bool]:
    """When the incident last paged, and whether someone took it up (``TAKEN_UP``) since. ``events``: its
    stored events of ``READ_KINDS`` (kind, at, data), newest first, read only as far back as its last page;
    ``opened``: when it opened (its page if the timeline has none); ``hold``: the announce delay, seconds,
    after which an opening is told (it pages then, not at its event; at its data's ``TOLD_AT`` where set)."""
    for kind, at, data in events:
        if kind in TAKEN_UP:
            return at, True  # no page after it: the last one is earlier (a lower bound is all callers need)
        if paged(kind, data):
            if kind != "opened":
                return at, False
            told = data.get(TOLD_AT)
            return (told if isinstance(told, datetime) else at + timedelta(seconds=hold)), False
    return opened + timedelta(seconds=hold), False


def unsilenced_at(at: datetime, silences: Iterable[tuple[datetime, datetime]]) -> datetime:
    """``at``, or when the silences (start, end) that hold at it end, one after another where they overlap."""
    spans = sorted(silences)
    moved = True
    while moved:
        moved = False
        for start, end in spans:
            if start <= at < end:
                at, moved = end, True
    return at


def reminder_due(
    events: Iterable[tuple[str, datetime, Mapping[str, object]]],
    now: datetime,
    after: float,
    opened: datetime,
    hold: float = 0.0,
    *,
    counted: Callable[[datetime], datetime] | None = None,
) -> float | None:
    """How long ago the incident last paged, when it is to page at ``now`` as a reminder: that page is
    ``after`` seconds old or older and nobody took the incident up since it (``TAKEN_UP``); else None.
    ``events``, ``opened`` and ``hold`` as ``last_page`` reads them; ``counted``: when a page stored at a
    time counts as made (``reminding.SteadyReminding._page_read``: one stored after ``now``, as at ``now``
    or earlier), by default then, or ``now`` if later (the wall clock was set back since)."""
    if after <= 0:
        return None
    last, taken_up = last_page(events, opened, hold)
    last = counted(last) if counted is not None else min(last, now)
    age = (now - last).total_seconds()
    return age if age >= after and not taken_up else None


def age_text(seconds: float) -> str:
    """How long ago the last page was, as a reminder says it: to the minute ("4h2m"), seconds under one."""
    return duration_text(seconds - seconds % 60 if seconds >= 60 else round(seconds))


def steady_text(seconds: float, flapping: bool = False) -> str:
    """The tick's reminder of an incident still firing: "still firing 4h after the last page, not
    acknowledged: reminding"; "still flapping ..." when what of it is not muted only flaps."""
    what = "flapping" if flapping else "firing"
    return f"still {what} {age_text(seconds)} after the last page, not acknowledged: reminding"


def held_text(flapping: bool, cycling: int, within: float, reminder: float | None) -> str:
    """What a reopening's message says of its hold: "(cycling: reopened 3 times within 1h by this alert, no
    page)", a flap's "(flapping: held, no page)", or, when it reminds, "...; still cycling 4h after the last
    page, reminding)"; empty for one that pages as any reopening does."""
    if not flapping and not cycling:
        return ""
    what = "flapping" if flapping else "cycling"
    said = [] if flapping else [f"reopened {cycling} times within {duration_text(within)} by this alert"]
    if reminder is None:
        return f" ({what}: {', '.join([*said, 'held, no page' if flapping else 'no page'])})"
    said.append(f"still {what} {age_text(reminder)} after the last page, reminding")
    return f" ({what}: {'; '.join(said)})"

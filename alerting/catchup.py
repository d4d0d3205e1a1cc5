"""The catch-up of a silence's end: the ``silence_ended`` event that tells what an incident's silence held
back (``catch_up``), read from its timeline and its stored silences.

A silenced incident's changes reach listeners marked silenced, and page nobody; when the silence ends (at its
time, expired early, or lifted by a fault beside it: ``alerting.muting``), one event sums up what happened
meanwhile: who silenced it, how many events were held back (the first few listed), and whether its priority
rose. Which silences count is the run ending now (``_last_run``), each as long as it really ran
(``_silence_ends``); an incident resolved when its silence ended gets no catch-up (``resolved_at_end``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from alerting.reminders import SILENCE_ENDED
from alerting.store_models import SilenceRow, TimelineRow

SILENCED, SILENCE_ENDING = "silenced", "silence_ending"
CAUGHT_UP_EVENTS = 5  # events listed in the catch-up event; the rest are counted
CAUGHT_UP_CHARS = 200  # of each
CLOSING = ("resolved", "reopened")  # the timeline events that close and reopen an incident


def silence_spans(session: Session, incident_id: str) -> list[tuple[datetime, datetime]]:
    """The incident's stored silences, (start, end). The rows, not their columns: a silence
    ``MuteTracking._lift_silences`` expired in this session, not flushed yet (ingest runs without
    autoflush), reads as it ends now, not as stored."""
    held = session.scalars(select(SilenceRow).where(SilenceRow.incident_id == incident_id))
    return [(row.starts_at, row.ends_at) for row in held]


def resolved_at_end(session: Session, incident_id: str, timeline: Sequence[TimelineRow]) -> bool:
    """Whether the incident was resolved when its silence ended, or at any time since (``resolved_since``),
    by its timeline after its last ``silenced`` event. Such an incident gets no catch-up, even when it is open
    again by the tick that sees the end (the release of what the silence muted reopens it in that very
    tick): the reopening pages, and a restart, which cannot know whether a tick saw the end, decides alike
    (``MuteTracking._track_silenced``)."""
    end = session.scalar(select(func.max(SilenceRow.ends_at)).where(SilenceRow.incident_id == incident_id))
    start = max((k for k, e in enumerate(timeline) if e.kind == SILENCED), default=-1)
    closings = [(e.kind, e.at) for e in timeline[start + 1 :] if e.kind in CLOSING]
    return end is not None and resolved_since(closings, end)


def resolved_since(events: Sequence[tuple[str, datetime]], at: datetime) -> bool:
    """Whether the incident was resolved at ``at`` or at any time after it, by its resolutions and
    reopenings in timeline order."""
    resolved = False
    for kind, when in events:
        if when > at and resolved:
            break
        resolved = kind == "resolved"
    return resolved


def catch_up(
    timeline: Sequence[TimelineRow],
    priority: str,
    since: datetime | None = None,
    *,
    early: str = "",
    spans: Sequence[tuple[datetime, datetime]] = (),
) -> tuple[str, dict[str, object], bool]:
    """The ``silence_ended`` event of an incident now at ``priority``: its message, its data (the priority
    before and after the silence, who silenced it, how many events were held back: of the run of silences
    ending now, ``_last_run``) and whether the incident
    became more urgent meanwhile ("P0" < "P1": more urgent). With ``since``, only what came after it counts
    (a silence of a version that did not hold notifications back, caught up from the upgrade on). ``early``:
    why the silence ended before its time (``MuteTracking._lift_silences``). ``spans``: the incident's
    stored silences (start, end), which say when each really ended (``_silence_ends``)."""
    real = _silence_ends(timeline, spans)
    ends = [k for k, e in enumerate(timeline) if e.kind == SILENCE_ENDED]
    last = timeline[ends[-1] + 1 :] if ends else timeline
    during = last[_last_run(last, real) :]
    by = sorted({str(e.data.get("by")) for e in during if e.kind == SILENCED and e.data.get("by")})
    # Held back: what happened until the last silence ran out, not what came after it.
    ran_out = (_end_of(e, real) for e in during if e.kind == SILENCED)
    ends_at = max((end for end in ran_out if end is not None), default=None)
    held = [
        e
        for e in during
        if e.kind not in (SILENCED, SILENCE_ENDING)
        and (ends_at is None or e.at < ends_at)
        and (since is None or e.at >= since)
    ]
    changes = [e for e in held if e.kind == "priority" and e.data.get("from") and e.data.get("to")]
    before = str(changes[0].data["from"]) if changes else priority
    priority = str(changes[-1].data["to"]) if changes else priority  # where the silence left it
    rose = priority < before
    parts = [f"silence ended (silenced by {', '.join(by)})" if by else "silence ended"]
    if early:  # lifted before its end: why
        parts[0] = parts[0].replace("silence ended", "silence ended early", 1) + f": {early}"
    if rose:
        parts.append(f"priority rose from {before} to {priority} while silenced")
    if held:
        listed = [_shorten(e.message) for e in held[:CAUGHT_UP_EVENTS]]
        if len(held) > CAUGHT_UP_EVENTS:
            listed.append(f"and {len(held) - CAUGHT_UP_EVENTS} more on the timeline")
        parts.append(f"{len(held)} event(s) while silenced: " + "; ".join(listed))
    else:
        parts.append("nothing happened while silenced")
    data: dict[str, object] = {"from": before, "to": priority, "held": len(held), "silenced_by": by}
    return "; ".join(parts), data, rose


def _last_run(events: Sequence[TimelineRow], real: Mapping[int, datetime]) -> int:
    """Where the run of silences that ends last (the one ending now) begins in ``events``: the index of its
    first ``silenced`` event (0 with none). A silence starting before the run so far has ended (when it
    really ended, ``real``; else by its event's time and length; one whose length is not said, until the
    next) is of it; one starting later begins a new run: an earlier silence whose end nobody saw (the
    incident was resolved then, or serve down; expired early through the API) is not of the catch-up, nor
    is what came between, told unsilenced."""
    start, end = 0, -math.inf
    for k, e in enumerate(events):
        if e.kind != SILENCED:
            continue
        ran_out = _end_of(e, real)
        until = ran_out.timestamp() if ran_out is not None else math.inf
        if e.at.timestamp() > end:
            start, end = k, until
        else:
            end = max(end, until)
    return start


def _silence_ends(
    timeline: Sequence[TimelineRow], spans: Sequence[tuple[datetime, datetime]]
) -> dict[int, datetime]:
    """When the silence of each ``silenced`` event of ``timeline`` (by ``id``) really ended, where the
    incident's stored silences (``spans``: start, end) say: one expired early (``DELETE``), updated in place
    or ended early by a fault beside it did not run the length its event says. An event's silence is stored
    just before it, under the engine's lock, so after the event before it: the latest end of those set from
    that event up to this one (several set in one instant run until the last of them ends). None for an
    event whose silence retention deleted (it ended long ago): its length stands."""
    real: dict[int, datetime] = {}
    after: datetime | None = None
    for e in timeline:
        if e.kind != SILENCED:
            continue
        ends = [end for start, end in spans if start <= e.at and (after is None or start >= after)]
        if ends:
            real[id(e)] = max(ends)
        after = e.at
    return real


def _end_of(event: TimelineRow, real: Mapping[int, datetime]) -> datetime | None:
    """When a ``silenced`` event's silence ended: really (``_silence_ends``), else by its length; None when
    neither says."""
    length = _length(event)
    return real.get(id(event)) or (event.at + length if length else None)


def _length(event: TimelineRow) -> timedelta:
    """How long a ``silenced`` event's silence ran (zero when its data does not say)."""
    try:
        return timedelta(seconds=float(event.data.get("seconds") or 0))
    except (TypeError, ValueError):
        return timedelta(0)


def _shorten(text: str) -> str:
    return text if len(text) <= CAUGHT_UP_CHARS else text[: CAUGHT_UP_CHARS - 1] + "…"

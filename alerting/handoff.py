"""The crash-safe hand-off of committed incident changes to listeners (the outbox).

Each transaction that changes incidents stores, in that same transaction, one ``UntoldChangeRow`` per change
(a ``before_commit`` hook on the engine's sessions, fed by each ``Batch``; only while the engine has
listeners, so a serve without a notifier, Slack or a webhook, stores none). After the commit the engine tells
its listeners and only then deletes the rows it told. If the process dies or the store drops in between, the
rows stay, and the next process (or the engine's next tick) tells them again. Listeners dedupe by the
event's idempotency key, so a change told twice is stored once; a change is never lost once committed.

What a change is told with (``Telling``) is decided here too, from the whole transaction and the incident's
recent timeline, and stored with it: told after a restart, or in another round with other changes, it says the
same. That includes whether it only repeats its incident's cycle (``flapping.folded``: Slack edits the message
in place, with no reply per cycle).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import timedelta

from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.db import in_lists
from alerting.flapping import CYCLE_KINDS, Folded, folded
from alerting.store_models import TimelineRow, UntoldChangeRow
from alerting.subscriptions import ChangeKind

Change = tuple[str, ChangeKind, TimelineRow]
_CHANGES = "gpuwarden.changes"  # Session.info key: the (changes, events) of the session's batches
# Timeline events no change tells of its own that its transaction's first update of the incident says.
# "alerts_moved": a reply telling an alert joined says too when the same transaction moved it on.
_SAID_WITH = frozenset({"alert_added", "alert_firing", "alert_resolved", "alerts_moved"})
_TELLING = (ChangeKind.UPDATED, ChangeKind.PRIORITY_CHANGED)  # the changes that say them


@dataclass(frozen=True, slots=True)
class Telling:
    """What a change is told with, as the transaction that made it decided (``IncidentChange``'s
    ``merging`` and ``also``)."""

    merging: bool = False  # the transaction merged the incident into another: told, paging nobody
    also: tuple[str, ...] = ()  # what it did to the incident besides, that no change tells
    folded: Folded | None = None  # a repeat of the incident's cycle: told in place, replied to nobody


NOTHING_ELSE = Telling()


@dataclass(frozen=True, slots=True)
class UntoldChange:
    """A stored change not told yet: its row id, the change as ``IncidentAnnouncing`` tells it, and what
    it is told with."""

    id: int
    change: Change
    telling: Telling = NOTHING_ELSE


def tellings(changes: Sequence[Change], events: Iterable[TimelineRow]) -> list[Telling]:
    """What each of one transaction's ``changes`` is told with, given every timeline event it wrote.

    A change of an incident the transaction merged into another (its priority raised by the same fault)
    is ``merging``: the incident that goes on pages for the fault. The first update or priority change of
    each incident says ``also`` what the transaction did to it that no change tells: alerts that joined,
    fired again, resolved or moved to another incident (or from one), an incident taken in (not of one it
    opened: its announcement shows it). Only from the transaction itself, never from how the changes are
    told later (in rounds of any size, before or after a restart)."""
    merged_away = {
        i
        for i, kind, ev in changes
        if kind is ChangeKind.RESOLVED and ev.kind == "merged" and "into" in ev.data
    }
    opened = {i for i, kind, _ in changes if kind is ChangeKind.OPENED}  # its announcement shows it all
    told = {id(ev) for _, _, ev in changes}
    untold: dict[str, list[str]] = {}
    for ev in events:
        if (
            id(ev) not in told
            and ev.incident_id not in opened
            and (ev.kind in _SAID_WITH or (ev.kind == "merged" and "from" in ev.data))
        ):
            untold.setdefault(ev.incident_id, []).append(ev.message)
    out: list[Telling] = []
    for incident_id, kind, _ in changes:
        merging = incident_id in merged_away and kind is not ChangeKind.RESOLVED
        also = untold.pop(incident_id, ()) if kind in _TELLING and not merging else ()
        out.append(Telling(merging, tuple(also)) if merging or also else NOTHING_ELSE)
    return out


def record_on_commit(
    sessions: sessionmaker[Session], wanted: Callable[[], bool], fold_window: float = 0.0
) -> None:
    """Have every transaction of ``sessions`` store the changes of its batches (see ``watch``) while
    ``wanted()`` says so (the engine has listeners: with none, nothing would ever tell and delete them);
    a change that repeats its incident's cycle within ``fold_window`` seconds is stored folded (0: none)."""

    def store_changes(session: Session) -> None:
        batches = session.info.pop(_CHANGES, ())
        if not wanted():
            return
        if any(ev.seq is None for changes, _ in batches for _, _, ev in changes):
            session.flush()  # numbers the timeline rows: each change names its own (``event_seq``)
        changes = [c for batch, _ in batches for c in batch]
        events = [ev for _, written in batches for ev in written]
        told = tellings(changes, events)
        for k, fold in _folds(session, changes, events, fold_window).items():
            told[k] = replace(told[k], folded=fold)
        for (incident_id, kind, ev), telling in zip(changes, told, strict=True):
            session.add(
                UntoldChangeRow(
                    incident_id=incident_id,
                    change=kind.value,
                    at=ev.at,
                    event_kind=ev.kind,
                    event_seq=ev.seq,
                    merging=telling.merging,
                    also=list(telling.also),
                    folded=None if telling.folded is None else asdict(telling.folded),
                )
            )

    event.listen(sessions, "before_commit", store_changes)


def _folds(
    session: Session, changes: Sequence[Change], events: Sequence[TimelineRow], window: float
) -> dict[int, Folded]:
    """The changes (by their place in ``changes``) that only repeat their incident's cycle
    (``flapping.folded``), decided from what the transaction wrote and the incident's stored timeline of the
    last ``window`` seconds: the same in a process restarted since, which holds nothing else of it."""
    candidates = [
        k
        for k, (_, kind, ev) in enumerate(changes)
        if kind is ChangeKind.UPDATED and ev.kind in CYCLE_KINDS and window > 0
    ]
    if not candidates:
        return {}
    session.flush()  # this transaction's events numbered: the stored ones are those before them
    written: dict[str, list[TimelineRow]] = {}
    for ev in events:
        written.setdefault(ev.incident_id, []).append(ev)
    mine = {ev.seq for ev in events}
    since = min(changes[k][2].at for k in candidates) - timedelta(seconds=window)
    earlier: dict[str, list[tuple[str, str, float]]] = {}
    for chunk in in_lists(sorted({changes[k][0] for k in candidates})):
        query = (
            select(
                TimelineRow.incident_id,
                TimelineRow.seq,
                TimelineRow.kind,
                TimelineRow.message,
                TimelineRow.at,
            )
            .where(TimelineRow.incident_id.in_(chunk), TimelineRow.at >= since)
            .order_by(TimelineRow.seq)
        )
        for incident_id, seq, kind, message, at in session.execute(query):
            if seq not in mine:
                earlier.setdefault(incident_id, []).append((kind, message, at.timestamp()))
    out: dict[int, Folded] = {}
    for k in candidates:
        incident_id, _, ev = changes[k]
        batch = [(e.kind, e.message, e.at.timestamp()) for e in written.get(incident_id, ())]
        fold = folded((ev.kind, ev.message, ev.at.timestamp()), earlier.get(incident_id, []), batch, window)
        if fold is not None:
            out[k] = fold
    return out


def watch(session: Session, changes: list[Change], events: list[TimelineRow]) -> None:
    """Store ``changes`` (as they are at commit) with the transaction of ``session``; ``events``: every
    timeline event the batch writes (what the changes are told with is decided from them, ``tellings``)."""
    session.info.setdefault(_CHANGES, []).append((changes, events))


def untold(sessions: sessionmaker[Session], limit: int) -> list[UntoldChange]:
    """The oldest ``limit`` changes not told yet, in commit order."""
    with sessions() as session:
        rows = session.scalars(select(UntoldChangeRow).order_by(UntoldChangeRow.id).limit(limit)).all()
        events = _events(session, [r.event_seq for r in rows if r.event_seq is not None])
        return [
            UntoldChange(
                r.id,
                (
                    r.incident_id,
                    ChangeKind(r.change),
                    events.get(r.event_seq or 0)
                    or TimelineRow(
                        incident_id=r.incident_id, at=r.at, kind=r.event_kind, message="", data={}
                    ),
                ),
                _telling(r),
            )
            for r in rows
        ]


def _telling(row: UntoldChangeRow) -> Telling:
    """What a stored change is told with (NULL columns, as rows stored before 0015 and 0016 have them: nothing
    besides, paging as before, not folded)."""
    if not (row.merging or row.also or row.folded):
        return NOTHING_ELSE
    stored = row.folded
    fold = (
        Folded(int(stored["fired_again"]), int(stored["went_quiet"]), float(stored["within_seconds"]))
        if stored
        else None
    )
    return Telling(bool(row.merging), tuple(row.also or ()), fold)


def _events(session: Session, seqs: Sequence[int]) -> dict[int, TimelineRow]:
    """The timeline rows of ``seqs`` (those retention pruned since are left out), as detached copies."""
    found: dict[int, TimelineRow] = {}
    for chunk in in_lists(seqs):
        for t in session.scalars(select(TimelineRow).where(TimelineRow.seq.in_(chunk))):
            found[t.seq] = TimelineRow(
                seq=t.seq, incident_id=t.incident_id, at=t.at, kind=t.kind, message=t.message, data=t.data
            )
    return found


def forget(sessions: sessionmaker[Session], told: Sequence[UntoldChange]) -> None:
    """Delete changes that were told."""
    if not told:
        return
    with sessions() as session, session.begin():
        for ids in in_lists([t.id for t in told]):
            session.execute(delete(UntoldChangeRow).where(UntoldChangeRow.id.in_(ids)))

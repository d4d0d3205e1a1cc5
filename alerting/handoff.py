"""The crash-safe hand-off of committed incident changes to listeners (the outbox).

Each transaction that changes incidents stores, in that same transaction, one ``UntoldChangeRow`` per change
(a ``before_commit`` hook on the engine's sessions, fed by each ``Batch``; only while the engine has
listeners, so a serve without a notifier, Slack or a webhook, stores none). After the commit the engine tells
its listeners and only then deletes the rows it told. If the process dies or the store drops in between, the
rows stay, and the next process (or the engine's next tick) tells them again. Listeners dedupe by the
event's idempotency key, so a change told twice is stored once; a change is never lost once committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.db import in_lists
from alerting.store_models import TimelineRow, UntoldChangeRow
from alerting.subscriptions import ChangeKind

Change = tuple[str, ChangeKind, TimelineRow]
_CHANGES = "gpuwarden.changes"  # Session.info key: the change lists of the session's batches


@dataclass(frozen=True, slots=True)
class UntoldChange:
    """A stored change not told yet: its row id and the change as ``IncidentAnnouncing`` tells it."""

    id: int
    change: Change


def record_on_commit(sessions: sessionmaker[Session], wanted: Callable[[], bool]) -> None:
    """Have every transaction of ``sessions`` store the changes of its batches (see ``watch``) while
    ``wanted()`` says so (the engine has listeners: with none, nothing would ever tell and delete them)."""

    def store_changes(session: Session) -> None:
        batches = session.info.pop(_CHANGES, ())
        if not wanted():
            return
        if any(ev.seq is None for changes in batches for _, _, ev in changes):
            session.flush()  # numbers the timeline rows: each change names its own (``event_seq``)
        for changes in batches:
            for incident_id, kind, ev in changes:
                session.add(
                    UntoldChangeRow(
                        incident_id=incident_id,
                        change=kind.value,
                        at=ev.at,
                        event_kind=ev.kind,
                        event_seq=ev.seq,
                    )
                )

    event.listen(sessions, "before_commit", store_changes)


def watch(session: Session, changes: list[Change]) -> None:
    """Store ``changes`` (as they are at commit) with the transaction of ``session``."""
    session.info.setdefault(_CHANGES, []).append(changes)


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
            )
            for r in rows
        ]


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

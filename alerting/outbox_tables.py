"""The outbox's tables: one row per notification for one notifier, and each incident's thread per notifier.

A message's ``status``: ``pending`` (waiting, maybe backing off), ``sending`` (handed to the notifier; found
so at start, it is retried as one that may have arrived), ``sent``, ``failed`` (refused for good, kept until
``outbox retry``), ``orphaned`` (was waiting for a notifier that is no longer configured: set aside at
start, out of the backlog, kept for inspection, queued again if a notifier of that name comes back),
``discarded`` (an orphaned or failed message an operator dropped with ``outbox discard``, kept with who
dropped it and when in ``last_error``; or an edit the outbox set aside as a later message of its incident
was waiting behind it, "superseded by message N": never sent, deleted with its incident by retention).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    Index,
    Integer,
    Select,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    or_,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, Mapped, Session, mapped_column

from alerting.db import Base

PENDING, SENDING, SENT, FAILED, ORPHANED = "pending", "sending", "sent", "failed", "orphaned"
DISCARDED = "discarded"
STATUSES = (PENDING, SENDING, SENT, FAILED, ORPHANED, DISCARDED)
"""Every status, in the order lists and metrics show them."""
WAITING = (PENDING, SENDING)
"""The statuses of messages still to deliver: the backlog."""
HELD = "held"
"""Not a stored status: a ``pending`` message held on purpose (``held_at``), as the metrics count it."""


class OutboxMessage(Base):
    """One notification for one notifier, waiting, in flight, sent or failed."""

    __tablename__ = "notification_outbox"
    __table_args__ = (
        UniqueConstraint("notifier", "idempotency_key", name="uq_outbox_notifier_key"),
        Index("ix_outbox_status_id", "status", "id"),
        Index("ix_outbox_notifier_incident", "notifier", "incident_id", "id"),
        # Retention's delete of sent messages finds them by all three (migration 0021); ``/metrics``'
        # counts by notifier and status read ``outbox_counts`` (0024).
        Index("ix_outbox_notifier_status_incident", "notifier", "status", "incident_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notifier: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[str] = mapped_column(String(128))
    idempotency_key: Mapped[str] = mapped_column(String(64))
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[float] = mapped_column(Float)
    next_attempt_at: Mapped[float] = mapped_column(Float)
    sent_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The incident's priority when the change was stored ("P0".."P3"): a backlog is delivered most urgent
    # first. NULL for a row stored before revision 0013 that was no longer waiting then.
    priority: Mapped[str | None] = mapped_column(String(2), nullable=True)


class OutboxCount(Base):
    """One side of how many messages of the outbox one notifier has in one status (migrations 0024, 0025):
    ``added``, how many came into it, and ``removed``, how many went out of it (negative); the count is the
    sum of the two (``kept_counts``). Kept by triggers on ``notification_outbox`` in the transaction of every
    change to it, read by ``/metrics`` and ``outbox list`` instead of a count of every message. Two rows, so
    that retention's delete of sent messages (``removed``) and the outbox marking one sent (``added``) write
    rows of their own: on PostgreSQL the one waited for the other's commit. A row at 0 stays."""

    __tablename__ = "outbox_counts"

    notifier: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    side: Mapped[str] = mapped_column(String(8), primary_key=True)
    messages: Mapped[int] = mapped_column(BigInteger)


def kept_counts() -> Select[str, str, int]:
    """How many messages each notifier has in each status, from ``outbox_counts``: ``(notifier, status,
    messages)``, none at 0."""
    messages = func.sum(OutboxCount.messages)
    return (
        select(OutboxCount.notifier, OutboxCount.status, messages)
        .group_by(OutboxCount.notifier, OutboxCount.status)
        .having(messages > 0)
    )


class NotificationThread(Base):
    """Where a notifier keeps an incident's conversation (Slack: channel id and parent ``ts``)."""

    __tablename__ = "notification_threads"

    notifier: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    channel: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ts: Mapped[str | None] = mapped_column(String(32), nullable=True)
    chart_posted: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[float] = mapped_column(Float)
    # The idempotency key of the notification the message was posted for (``ThreadState.posted_for``);
    # NULL: not known (a thread stored before revision 0023).
    posted_for: Mapped[str | None] = mapped_column(String(64), nullable=True)


class NotifierPause(Base):
    """A notifier the far end rate limited: no call to it before ``until`` (clock seconds), whichever serve
    dispatches (a restarted one, or a standby that took over)."""

    __tablename__ = "notifier_pauses"

    notifier: Mapped[str] = mapped_column(String(64), primary_key=True)
    until: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)


def held_at(now: float, holds: Mapping[str, float]) -> ColumnElement[bool]:
    """The messages held on purpose at clock time ``now``: a webhook's ``reassessed`` update waiting out its
    ``edit_interval_seconds`` (``Outbox._edit_due``; ``holds``: each holding notifier's interval): pending,
    never tried (``never_tried``: no attempt, no error; a first attempt refused by a rate limit is backlog
    waiting out its pause), due later, but within its notifier's interval: one stored further ahead is due
    (``Outbox._due``), the wall clock went back since (or the interval was shortened), not held that long."""
    within = [
        (OutboxMessage.notifier == name) & (OutboxMessage.next_attempt_at <= now + seconds)
        for name, seconds in holds.items()
    ]
    return (
        (OutboxMessage.status == PENDING)
        & (OutboxMessage.attempts == 0)
        & OutboxMessage.last_error.is_(None)
        & (OutboxMessage.next_attempt_at > now)
        & or_(false(), *within)
    )


def never_tried(message: OutboxMessage) -> bool:
    """Whether ``message`` is of the kind ``held_at`` holds: never tried, no error (a stored, pending one)."""
    return message.attempts == 0 and message.last_error is None


def first_taken(session: Session, *where: ColumnElement[bool]) -> dict[str, datetime]:
    """When the outbox first took a change of each incident, of the messages ``where`` selects: the earliest
    stored for any notifier, not one discarded (``outbox discard``, or an edit superseded: never sent, it
    paged nobody). The one reading of "when the outbox took it": the outbox's answer to an opening told
    again (``Outbox.__call__``), and the announcement a crash lost (``announcing.taken_by_outbox``)."""
    first = (
        select(OutboxMessage.incident_id, func.min(OutboxMessage.created_at))
        .where(*where, OutboxMessage.status != DISCARDED)
        .group_by(OutboxMessage.incident_id)
    )
    return {one: datetime.fromtimestamp(at, UTC) for one, at in session.execute(first)}


def stored_names(session: Session, column: InstrumentedAttribute[str]) -> list[str]:
    """The distinct values of ``column``, the first of an index (the notifiers of the outbox or of the
    threads: a few), in order: one index step each rather than a read of the whole table, all in one
    statement (a recursive query: each step the least value past the one before), so one round trip to a
    PostgreSQL server however many there are (one statement per name and one more, 5 ms to 30 ms each at
    load 16, were most of ``outbox list --incident``'s time there)."""
    names = select(func.min(column).label("name")).cte("names", recursive=True)
    past = select(func.min(column)).where(column > names.c.name).scalar_subquery()
    names = names.union_all(select(past).where(names.c.name.is_not(None)))
    query = select(names.c.name).where(names.c.name.is_not(None))
    return [str(name) for name in session.scalars(query)]


def of_incident(session: Session, incident_id: str) -> ColumnElement[bool]:
    """The messages of one incident, as the outbox's index finds them: it begins with the notifier, and a
    condition on the incident alone read every message of the whole history (``outbox list --incident``
    3.7 s beside 600,000 messages, the same again for its counts)."""
    notifiers = stored_names(session, OutboxMessage.notifier)
    return OutboxMessage.notifier.in_(notifiers) & (OutboxMessage.incident_id == incident_id)


def in_counts_order(session: Session, names: Collection[str]) -> list[str]:
    """``names`` in the order of their ``outbox_counts`` rows in the store (its collation: PostgreSQL's need
    not be Python's), a name with none last. A transaction that writes messages of several notifiers by
    several statements writes them in this order: each statement's trigger (migration 0024) locks the
    counts rows it changes until commit, in ``(notifier, status)`` order, so every writer takes them in one
    order and none waits for another in a circle (a deadlock, one of them aborted)."""
    query = (
        select(OutboxCount.notifier)
        .where(OutboxCount.notifier.in_(sorted(names)))
        .distinct()
        .order_by(OutboxCount.notifier)
    )
    ranked = [str(name) for name in session.scalars(query)]
    return ranked + sorted(set(names) - set(ranked))

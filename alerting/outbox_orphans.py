"""Messages left waiting for a notifier that is no longer configured (a webhook deleted, Slack turned off).

Nothing would ever send them, yet they counted as the outbox's backlog (``gpuwarden_outbox_messages`` with
status pending, ``outbox list``) for good, so an alert on that backlog fired for good. At start, ``serve``
sets them aside as ``orphaned``: reported once (one log line per notifier, with the count), out of the
backlog, kept with their payload for inspection (``outbox list --status orphaned``). A notifier configured
again under the same name (``slack``, ``webhook:<name>``) takes its set-aside messages back at the next
start, in their incident's order, ahead of anything new: removing a notifier for a while is an outage of it,
and an outage delays messages, never drops them. Failed messages stay failed either way.

A notifier removed for good leaves its orphaned messages behind; ``discard_messages`` (``outbox discard``)
drops them deliberately: status ``discarded``, never sent even if the name comes back, with who dropped them,
when and what they were in ``last_error``, and one log line. It touches failed messages only when asked, and
never a message of the backlog (pending, sending) or one that was sent.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from alerting.db import locked_rows
from alerting.outbox_tables import (
    DISCARDED,
    FAILED,
    ORPHANED,
    PENDING,
    WAITING,
    OutboxMessage,
    in_counts_order,
)
from alerting.store import NotFound
from gpuwarden.clock import shown
from gpuwarden.errors import InputError

logger = logging.getLogger(__name__)


DISCARDABLE = (ORPHANED, FAILED)
"""What ``discard_messages`` may drop: messages nothing delivers (the backlog is a notifier's to send)."""


@dataclass(frozen=True, slots=True)
class Discarded:
    """What ``discard_messages`` dropped (or, on a dry run, would drop): counts by status, and the ids."""

    counts: dict[str, int]
    ids: list[int]


@dataclass(frozen=True, slots=True)
class OrphanReport:
    """What ``reconcile_orphans`` did, by notifier name: messages set aside, and messages taken back."""

    set_aside: dict[str, int] = field(default_factory=dict)
    resumed: dict[str, int] = field(default_factory=dict)


def reconcile_orphans(engine: Engine, configured: Collection[str], now: float) -> OrphanReport:
    """Set aside the waiting messages of notifiers not in ``configured``, and queue again (due ``now``) the
    set-aside messages of those that are; log one line per notifier that had any."""
    names = list(configured)
    with Session(engine) as session, session.begin():
        set_aside = _counts(session, OutboxMessage.status.in_(WAITING), OutboxMessage.notifier.not_in(names))
        resumed = _counts(session, OutboxMessage.status == ORPHANED, OutboxMessage.notifier.in_(names))
        # A notifier at a time, in the counts rows' order (``in_counts_order``): those set aside and those
        # taken back are not written by one statement each, which took the first's before the second's.
        for notifier in in_counts_order(session, set(set_aside) | set(resumed)):
            mine = OutboxMessage.notifier == notifier
            if notifier in set_aside:
                session.execute(
                    update(OutboxMessage)
                    .where(mine, OutboxMessage.status.in_(WAITING))
                    .values(status=ORPHANED)
                )
            else:
                # The attempts are kept: a message that was in flight is still sent as a retry (the far end
                # may have it), so Slack looks for it before posting again.
                session.execute(
                    update(OutboxMessage)
                    .where(mine, OutboxMessage.status == ORPHANED)
                    .values(status=PENDING, next_attempt_at=now)
                )
    for notifier, count in set_aside.items():
        logger.warning(
            "outbox: %d messages for notifier %s, which is no longer configured, set aside (status"
            " orphaned: out of the backlog, kept; they go out if %s is configured again)",
            count,
            notifier,
            notifier,
        )
    for notifier, count in resumed.items():
        logger.info(
            "outbox: %d set-aside messages for notifier %s, configured again, queued again", count, notifier
        )
    return OrphanReport(set_aside, resumed)


def _counts(session: Session, *where: ColumnElement[bool]) -> dict[str, int]:
    """How many messages each notifier has that match ``where``."""
    query = select(OutboxMessage.notifier, func.count()).where(*where).group_by(OutboxMessage.notifier)
    return {
        str(notifier): int(count)
        for notifier, count in session.execute(query.order_by(OutboxMessage.notifier))
    }


def discard_messages(
    sessions: sessionmaker[Session],
    notifier: str,
    statuses: Collection[str],
    *,
    by: str,
    now: float,
    incident_id: str | None = None,
    dry_run: bool = False,
    ids: Collection[int] | None = None,
) -> Discarded:
    """Mark ``notifier``'s messages of ``statuses`` (of one incident, or all; with ``ids``, only those of
    them: what a dry run counted, which a question showed) discarded, recording ``by`` and ``now``; returns
    how many of each status and which (what it would discard, with ``dry_run``). Raises
    ``InputError`` for a status that is not discardable and ``NotFound`` when the store holds no message of
    ``notifier`` at all (a typo: ``outbox list`` shows the names)."""
    refused = sorted(set(statuses) - set(DISCARDABLE))
    if refused or not statuses:
        raise InputError(
            f"{', '.join(refused) or 'none given'}: only {' and '.join(DISCARDABLE)} messages can be"
            " discarded"
            " (pending and sending ones are a configured notifier's backlog: fix or remove the notifier;"
            " sent ones go with their incident, by retention)",
            field="statuses",
        )
    with sessions() as session, session.begin():
        if (
            session.scalar(select(OutboxMessage.id).where(OutboxMessage.notifier == notifier).limit(1))
            is None
        ):
            raise NotFound(
                f"no message of notifier {notifier!r} is stored (outbox list shows the names)",
                field="notifier",
            )
        query = select(OutboxMessage).where(
            OutboxMessage.notifier == notifier, OutboxMessage.status.in_(list(statuses))
        )
        if incident_id is not None:
            query = query.where(OutboxMessage.incident_id == incident_id)
        rows = locked_rows(session, query.order_by(OutboxMessage.id))  # see ``Outbox.requeue_failed``
        if ids is not None:  # filtered here, not by an IN of maybe 100,000 ids (SQLite takes 32,766)
            wanted = set(ids)
            rows = [r for r in rows if r.id in wanted]
        counts = {status: sum(1 for r in rows if r.status == status) for status in statuses}
        if dry_run:
            return Discarded(counts, [r.id for r in rows])
        at = shown(datetime.fromtimestamp(now, UTC))
        # A status at a time, in order: on PostgreSQL each UPDATE's trigger locks the counts rows of
        # ``discarded`` and the message's status (migration 0024), so they are taken in their key's order, as
        # every writer takes them (``Outbox.requeue_failed``), never ``orphaned`` before ``failed``.
        for status in sorted(counts):
            for row in (r for r in rows if r.status == status):
                before = f"; last error: {row.last_error}" if row.last_error else ""
                row.status, row.last_error = DISCARDED, f"discarded by {by} at {at} (was {status}{before})"
            session.flush()
    if rows:
        logger.warning(
            "outbox: %d messages for notifier %s discarded by %s (%s); they will never be sent",
            len(rows),
            notifier,
            by,
            ", ".join(f"{status} {n}" for status, n in counts.items() if n),
        )
    return Discarded(counts, [r.id for r in rows])

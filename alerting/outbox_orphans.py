"""Messages left waiting for a notifier that is no longer configured (a webhook deleted, Slack turned off).

Nothing would ever send them, yet they counted as the outbox's backlog (``gpuwarden_outbox_messages`` with
status pending, ``outbox list``) for good, so an alert on that backlog fired for good. At start, ``serve``
sets them aside as ``orphaned``: reported once (one log line per notifier, with the count), out of the
backlog, kept with their payload for inspection (``outbox list --status orphaned``). A notifier configured
again under the same name (``slack``, ``webhook:<name>``) takes its set-aside messages back at the next
start, in their incident's order, ahead of anything new: removing a notifier for a while is an outage of it,
and an outage delays messages, never drops them. Failed messages stay failed either way.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, Engine, func, select, update
from sqlalchemy.orm import Session

from alerting.outbox_tables import ORPHANED, PENDING, WAITING, OutboxMessage

logger = logging.getLogger(__name__)


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
        if set_aside:
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status.in_(WAITING), OutboxMessage.notifier.in_(list(set_aside)))
                .values(status=ORPHANED)
            )
        if resumed:
            # The attempts are kept: a message that was in flight is still sent as a retry (the far end
            # may have it), so Slack looks for it before posting again.
            session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.status == ORPHANED, OutboxMessage.notifier.in_(list(resumed)))
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

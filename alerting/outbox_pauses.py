"""Rate-limit pauses of the outbox's notifiers, kept in the store (table ``notifier_pauses``).

A far end that answers 429 with ``Retry-After`` (Slack's limit is the app's, a webhook's the receiver's) must
not be called again before that time has passed, by any serve: a restart or a standby taking over within the
pause would call at once, be refused again, and Slack may escalate the rate limiting of an app that keeps
calling. The pause is stored with the refused message's update; each dispatch round reads it back, and
deletes the pauses that have ended, of any notifier: one of a webhook removed or renamed since is read by no
one else, and would stay for good.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from sqlalchemy import delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from alerting.outbox_tables import NotifierPause

logger = logging.getLogger(__name__)


def keep_pause(session: Session, notifier: str, until: float, reason: str) -> float:
    """Store that ``notifier`` is paused until ``until`` (a later stored pause stays); returns the end."""
    row = session.get(NotifierPause, notifier)
    if row is None:
        session.add(NotifierPause(notifier=notifier, until=until, reason=reason[:2000]))
        return until
    if until > row.until:
        row.until, row.reason = until, reason[:2000]
    return row.until


def stored_pauses(session: Session, notifiers: Collection[str], now: float) -> dict[str, float]:
    """The pauses of ``notifiers`` that have not ended at ``now``: ``{notifier: until}``. Pauses of any
    notifier that ended by ``now`` are deleted (committing ``session``); one a far end renewed meanwhile
    stays. The table holds a row per notifier rate limited lately: it is read whole."""
    rows = [
        (str(name), float(until))
        for name, until in session.execute(select(NotifierPause.notifier, NotifierPause.until))
    ]
    ended = [name for name, until in rows if until <= now]
    if ended:
        _forget_ended(session, ended, now)
    wanted = set(notifiers)
    return {name: until for name, until in rows if until > now and name in wanted}


def _forget_ended(session: Session, ended: Collection[str], now: float) -> None:
    """Delete the ended pauses; when the store refuses, the next round deletes them (they pause nothing)."""
    try:
        session.execute(
            delete(NotifierPause).where(NotifierPause.notifier.in_(list(ended)), NotifierPause.until <= now)
        )
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        logger.warning("ended notifier pauses not deleted; tried again at the next round: %r", exc)

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

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from alerting.outbox_tables import NotifierPause

logger = logging.getLogger(__name__)

MAX_PAUSE_SECONDS = 3600.0
"""The longest pause kept (as a webhook's ``Retry-After`` is cut): a far end asking for years held every
message of its notifier for years. A pause found to end later than this from now is over: it was set before
the wall clock was set back, or kept by a release without this bound."""


def keep_pause(session: Session, notifier: str, until: float, reason: str) -> float:
    """Store that ``notifier`` is paused until ``until`` (a later stored pause stays); returns the end."""
    row = session.get(NotifierPause, notifier)
    if row is None:
        session.add(NotifierPause(notifier=notifier, until=until, reason=reason[:2000]))
        return until
    if until > row.until:
        row.until, row.reason = until, reason[:2000]
    return row.until


def restart_pause(session: Session, notifier: str, until: float, moved: float) -> None:
    """Move ``notifier``'s pause ending at ``until`` to end at ``moved`` (committing ``session``): the wall
    clock went back since it was set. A pause stored since (a far end's renewal, another serve's) stays."""
    try:
        session.execute(
            update(NotifierPause)
            .where(NotifierPause.notifier == notifier, NotifierPause.until == until)
            .values(until=moved)
        )
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        logger.warning("notifier pause not moved after the clock went back notifier=%s: %r", notifier, exc)


def pause_over(until: float, now: float) -> bool:
    """Whether a pause ending at ``until`` no longer holds at ``now``: it has ended, or it ends more than
    ``MAX_PAUSE_SECONDS`` from now (the clock went back since, or no bound was applied when it was kept)."""
    return until <= now or until - now > MAX_PAUSE_SECONDS


def stored_pauses(session: Session, notifiers: Collection[str], now: float) -> dict[str, float]:
    """The pauses of ``notifiers`` that hold at ``now``: ``{notifier: until}``. Pauses of any notifier that
    are over (``pause_over``) are deleted (committing ``session``); one a far end renewed meanwhile stays.
    The table holds a row per notifier rate limited lately: it is read whole."""
    rows = [
        (str(name), float(until))
        for name, until in session.execute(select(NotifierPause.notifier, NotifierPause.until))
    ]
    over = [(name, until) for name, until in rows if pause_over(until, now)]
    for name, until in over:
        if until > now:
            logger.warning(
                "notifier pause ignored: it ends %.0f s from now, more than the %.0f s a pause may last"
                " (the clock was set back, or an older release kept it) notifier=%s",
                until - now,
                MAX_PAUSE_SECONDS,
                name,
            )
    if over:
        _forget_over(session, [name for name, _ in over], now)
    wanted = set(notifiers)
    return {name: until for name, until in rows if not pause_over(until, now) and name in wanted}


def _forget_over(session: Session, over: Collection[str], now: float) -> None:
    """Delete the pauses that are over; when the store refuses, the next round deletes them (they pause
    nothing)."""
    try:
        session.execute(
            delete(NotifierPause).where(
                NotifierPause.notifier.in_(list(over)),
                (NotifierPause.until <= now) | (NotifierPause.until > now + MAX_PAUSE_SECONDS),
            )
        )
        session.commit()
    except SQLAlchemyError as exc:
        session.rollback()
        logger.warning("ended notifier pauses not deleted; tried again at the next round: %r", exc)

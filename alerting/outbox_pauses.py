"""Rate-limit pauses of the outbox's notifiers, kept in the store (table ``notifier_pauses``).

A far end that answers 429 with ``Retry-After`` (Slack's limit is the app's, a webhook's the receiver's) must
not be called again before that time has passed, by any serve: a restart or a standby taking over within the
pause would call at once, be refused again, and Slack may escalate the rate limiting of an app that keeps
calling. The pause is stored with the refused message's update; each dispatch round reads it back.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import select
from sqlalchemy.orm import Session

from alerting.outbox_tables import NotifierPause


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
    """The pauses of ``notifiers`` that have not ended at ``now``: ``{notifier: until}``."""
    query = select(NotifierPause.notifier, NotifierPause.until).where(
        NotifierPause.notifier.in_(list(notifiers)), NotifierPause.until > now
    )
    return {str(name): float(until) for name, until in session.execute(query)}

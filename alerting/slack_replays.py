"""Slack requests already handled, remembered in the store for as long as Slack's signature stays valid.

A signed Slack request is good for five minutes either side of its timestamp (``REPLAY_WINDOW_SECONDS``):
the signature alone let anyone who saw one "Approve remediation" request send it again inside that window
and approve a second time (a reopened incident went back to mitigating, with a second approval on its
timeline). Each request's signature (an HMAC of its timestamp and body, so a replay carries the same one) is
stored on first use; a second use finds it and changes nothing. The rows live in the store, not in memory,
so a restarted server or a standby that took over refuses the replay too, and two replicas racing on one
replay are settled by the primary key.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from alerting.store_models import SlackRequestRow

REPLAY_WINDOW_SECONDS = 300  # Slack's: a request whose timestamp is further from the clock is refused


class HandledSlackRequests:
    """Signatures of the Slack requests handled within the replay window, in the store."""

    def __init__(self, engine: Engine, window_seconds: float = REPLAY_WINDOW_SECONDS) -> None:
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Kept for twice the window: a request stays valid until ``window`` past its timestamp, and a
        # standby's clock may run behind the one that stored it.
        self._kept_seconds = 2 * window_seconds

    def first_use(self, signature: str, sent_at: float, now: float) -> bool:
        """Record ``signature`` (of a request timestamped ``sent_at``) as handled; False if it already was.

        Rows whose request is past the window are pruned in the same transaction: those requests are refused
        as stale before they get here, so forgetting them lets nothing through.
        """
        oldest = datetime.fromtimestamp(now - self._kept_seconds, UTC)
        row = SlackRequestRow(
            signature=signature,
            sent_at=datetime.fromtimestamp(sent_at, UTC),
            handled_at=datetime.fromtimestamp(now, UTC),
        )
        try:
            with self._sessions() as session, session.begin():
                session.execute(delete(SlackRequestRow).where(SlackRequestRow.sent_at < oldest))
                session.add(row)
        except IntegrityError:
            return False
        return True

    def count(self) -> int:
        """How many handled requests are remembered."""
        with self._sessions() as session:
            return int(session.scalar(select(func.count()).select_from(SlackRequestRow)) or 0)

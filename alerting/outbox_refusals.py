"""How the outbox takes a notifier's refusal of a message: failed for good, retried after a backoff, paused
for a rate limit (the notifier's, or one incident's), or held while the far end refuses every call until
someone acts (``BackendError.until_fixed``: Slack's revoked token).

``OutboxRefusals`` is a base of ``alerting.outbox_delivery.OutboxDelivery``, which sets the state below.
A notifier held so (``_blocked``) is called again every ``BLOCK_RETRY_SECONDS`` with its first waiting
message, and none of its messages is failed: they wait, in order, and go out once a call goes through
(a restart with a working token sends at once: the hold is this process's). It is said once, as an error,
then shown by ``outbox list`` (``blocked``) and ``gpuwarden_notifier_blocked``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from alerting.outbox_pauses import MAX_PAUSE_SECONDS, keep_pause
from alerting.outbox_plan import Backoff
from alerting.outbox_stats import OutboxStats
from alerting.outbox_tables import FAILED, PENDING, OutboxMessage
from gpuwarden.clock import Clock

# The outbox's logger: what delivery logs is read (and filtered) as the outbox's, as before the split.
logger = logging.getLogger("alerting.outbox")

BLOCK_RETRY_SECONDS = 60.0
"""How often a notifier whose far end refuses every call until someone acts is tried again (one message)."""


@dataclass(frozen=True, slots=True)
class Blocked:
    """A notifier refused every call since ``since``; tried again at ``until``; ``reason``: its last error."""

    since: float
    until: float
    reason: str


class OutboxRefusals:
    """What the outbox does with a refused message; a base of ``OutboxDelivery``, which sets the state."""

    _sessions: sessionmaker[Session]
    _clock: Clock
    _backoff: Backoff
    stats: OutboxStats
    _paused_until: dict[str, float]
    _pauses_set: dict[str, tuple[float, float]]  # notifier name -> (when this process paused it, until)
    _backing_off: set[str]
    _limit_holds: dict[tuple[str, str], tuple[float, float]]  # (notifier, incident) -> (set at, until)
    _blocks: dict[str, Blocked]  # notifier name -> why every call of it is refused (``_blocked``)
    _holds_said: dict[tuple[str, str], str]  # (notifier, incident) -> the hold's error last logged

    def _failed(self, row_id: int, attempts: int, error: str, *, retryable: bool) -> bool | None:
        with self._sessions() as session, session.begin():
            row = session.get_one(OutboxMessage, row_id)
            row.last_error = error[:2000]
            if retryable:
                row.status = PENDING
                row.next_attempt_at = self._clock.time() + self._backoff.delay(attempts)
                self._backing_off.add(row.notifier)
            else:
                row.status = FAILED
            notifier, incident_id = row.notifier, row.incident_id
        if retryable:
            self.stats.count(self.stats.by_notifier_retried, notifier)
            logger.warning(
                "notification delayed notifier=%s incident_id=%s attempts=%d error=%s",
                notifier,
                incident_id,
                attempts,
                error,
            )
            return False
        self.stats.count(self.stats.by_notifier_failed, notifier)
        logger.error("notification failed notifier=%s incident_id=%s error=%s", notifier, incident_id, error)
        return None

    def _rate_limited(self, notifier: str, row_id: int, wait: float, error: str) -> bool:
        """The far end refused the call for a rate limit: pause the notifier for ``wait`` seconds. The call
        was refused, so it delivered nothing: the attempt is not counted (the retry is no recovery that looks
        for an earlier post unless an earlier attempt may have made one). A wait over ``MAX_PAUSE_SECONDS``
        is cut to it: a far end asking for years would silence the notifier for years."""
        if wait > MAX_PAUSE_SECONDS:
            error = f"{error} (asked to wait {wait:.0f} s; waiting {MAX_PAUSE_SECONDS:.0f} s)"
            wait = MAX_PAUSE_SECONDS
        now = self._clock.time()
        until = now + wait
        with self._sessions() as session, session.begin():
            # Stored with the refused message: a restarted serve or a standby honours it too.
            self._paused_until[notifier] = keep_pause(session, notifier, until, error)
            self._pauses_set[notifier] = (now, self._paused_until[notifier])
            row = session.get_one(OutboxMessage, row_id)
            row.status, row.attempts, row.last_error = PENDING, row.attempts - 1, error[:2000]
            row.next_attempt_at = until
            incident_id = row.incident_id
        self.stats.count(self.stats.by_notifier_retried, notifier)
        logger.warning(
            "notifier rate limited: no call to it for %.0f s notifier=%s incident_id=%s error=%s",
            wait,
            notifier,
            incident_id,
            error,
        )
        return False

    def _held_by_limit(self, notifier: str, row_id: int, wait: float, error: str) -> bool:
        """One of the far end's limits refused a call this message needs (``BackendError.limit``: Slack's per
        method, or a thread in a channel the app can no longer post to), not the notifier's as a whole: its
        incident's messages wait ``wait`` seconds (an hour at most), the others go on. The attempt is not
        counted (``_rate_limited``). Kept in memory only: a restart calls once more, and is told again."""
        now = self._clock.time()
        until = now + min(wait, MAX_PAUSE_SECONDS)
        with self._sessions() as session, session.begin():
            row = session.get_one(OutboxMessage, row_id)
            row.status, row.attempts, row.last_error = PENDING, row.attempts - 1, error[:2000]
            row.next_attempt_at, incident_id = until, row.incident_id
        self._limit_holds[(notifier, incident_id)] = (now, until)
        self.stats.count(self.stats.by_notifier_retried, notifier)
        # Said once while the same error holds the incident (a stuck thread's, every minute until someone
        # acts, was a warning a minute for each of its incidents); said again when it changes.
        said = self._holds_said.get((notifier, incident_id)) == error
        self._holds_said[(notifier, incident_id)] = error
        (logger.debug if said else logger.warning)(
            "held: this incident's messages wait %.0f s, the others go on notifier=%s incident_id=%s"
            " error=%s",
            wait,
            notifier,
            incident_id,
            error,
        )
        return False

    def _held(self, notifier: str, incident_id: str) -> bool:
        """Whether the incident's messages wait out a limit of the far end (``_held_by_limit``); not once
        the wall clock went back past when it was set (the wait would be stretched by the step)."""
        set_at, until = self._limit_holds.get((notifier, incident_id), (0.0, 0.0))
        now = self._clock.time()
        if until and (until <= now or now < set_at):
            del self._limit_holds[(notifier, incident_id)]
        return set_at <= now < until

    def _blocked(self, notifier: str, row_id: int, error: str) -> bool:
        """The far end refuses every call of ``notifier`` until someone acts (``BackendError.until_fixed``):
        hold all of its messages (this one pending, its attempt not counted: the call was refused) and try
        again in ``BLOCK_RETRY_SECONDS``. Failed one by one, each was lost to the incident's thread until
        someone queued it again, and each logged an error. Logged once, when the hold begins."""
        now = self._clock.time()
        with self._sessions() as session, session.begin():
            row = session.get_one(OutboxMessage, row_id)
            row.status, row.attempts, row.last_error = PENDING, max(row.attempts - 1, 0), error[:2000]
            row.next_attempt_at, incident_id = min(row.next_attempt_at, now), row.incident_id
        before = self._blocks.get(notifier)
        self._blocks[notifier] = Blocked(before.since if before else now, now + BLOCK_RETRY_SECONDS, error)
        self.stats.count(self.stats.by_notifier_retried, notifier)
        say = logger.debug if before is not None else logger.error
        say(
            "notifier refuses every call until someone acts: all of its messages are held (none failed) and"
            " go out in order once a call goes through; tried again every %.0f s notifier=%s incident_id=%s"
            " error=%s",
            BLOCK_RETRY_SECONDS,
            notifier,
            incident_id,
            error,
        )
        return False

    def _unblocked(self, notifier: str, incident_id: str) -> None:
        """A call of ``notifier`` for ``incident_id`` went through: the messages it held go out."""
        self._holds_said.pop((notifier, incident_id), None)
        block = self._blocks.pop(notifier, None)
        if block is not None:
            logger.warning(
                "notifier takes calls again after %.0f s: its held messages go out in order notifier=%s",
                self._clock.time() - block.since,
                notifier,
            )

    def blocking(self, notifier: str) -> bool:
        """Whether ``notifier`` waits to be tried again after refusing every call (``_blocked``); not once
        the wall clock went back past when it was held (the wait would be stretched by the step)."""
        block = self._blocks.get(notifier)
        now = self._clock.time()
        return block is not None and now < block.until <= now + BLOCK_RETRY_SECONDS

    def blocked(self) -> dict[str, Blocked]:
        """The notifiers whose far end refused every call at their last try (``outbox list``: why their
        messages wait): ``{name: Blocked}``."""
        return dict(self._blocks)

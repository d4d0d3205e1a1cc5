"""Delivering the outbox's messages: in order per (notifier, incident), with retries, and never twice.

``OutboxDelivery`` is the part of ``alerting.outbox.Outbox`` that sends what the enqueue stored.
``dispatch_due`` delivers rows in order per (notifier, incident): a later message of an incident never
overtakes an earlier one, while other incidents and other notifiers go on. A retryable failure
(``BackendError.retryable``, or an unexpected exception) keeps the row with an exponential backoff driven by
the ``Clock`` and no attempt limit, until a delivery to that notifier succeeds again (then every message
backing off is due at once, still in order per incident); a rate limit (``BackendError.retry_after``) pauses
every call to that notifier until its Retry-After has passed, an hour at most (kept in the store,
``alerting.outbox_pauses``, so a restarted serve or a standby honours it too; a wait found to end further
ahead than the outbox ever sets is over: the wall clock went back since), or, for one of its limits only
(``BackendError.limit``: Slack's per method), its incident's messages alone; a non-retryable one marks it
``failed`` (kept, see ``Outbox.requeue_failed``). An ``edit_only`` change waiting when a later message of
its incident waits too is set aside unsent (``_superseded``).

Crash safety: a row is marked ``sending`` and committed before the notifier runs, and ``sent`` after.
A row found in ``sending`` (or one that failed before) is retried with ``retry=True``, which tells the
notifier that the far end may already have it (``alerting.outbox`` says what the notifiers do with it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from alerting.fencing import LockFence, NotActive
from alerting.notifiers.base import Notification, Notifier, ThreadOpeningNotifier, ThreadState
from alerting.outbox_pauses import pause_over, restart_pause, stored_pauses
from alerting.outbox_plan import Backoff, Group, overtaken, plan, stands_in, waited_on
from alerting.outbox_refusals import Blocked, OutboxRefusals
from alerting.outbox_stats import OutboxStats
from alerting.outbox_tables import (
    DISCARDED,
    PENDING,
    SENDING,
    SENT,
    WAITING,
    NotificationThread,
    OutboxMessage,
    never_tried,
)
from gpuwarden.clock import Clock
from gpuwarden.errors import BackendError

# The outbox's logger: what delivery logs is read (and filtered) as the outbox's, as before the split.
logger = logging.getLogger("alerting.outbox")


class OutboxDelivery(OutboxRefusals):
    """Sends the outbox's due messages in order, with retries and pauses; the base of ``Outbox``, which
    sets the state below (and its base's, ``OutboxRefusals``: what a refused message does)."""

    _sessions: sessionmaker[Session]
    _notifiers: dict[str, Notifier]
    _clock: Clock
    _backoff: Backoff
    _holds: dict[str, float]  # notifier name -> how long it holds an ``edit_only`` change
    stats: OutboxStats
    _paused_until: dict[str, float]
    _pauses_set: dict[str, tuple[float, float]]  # notifier name -> (when this process paused it, until)
    _backing_off: set[str]
    _limit_holds: dict[tuple[str, str], tuple[float, float]]  # (notifier, incident) -> (set at, until)
    _blocks: dict[str, Blocked]
    _holds_said: dict[tuple[str, str], str]
    fence: LockFence
    hurry: threading.Event
    _sends: threading.Condition  # guards ``_in_flight`` and the check that no send starts after a stop
    _in_flight: int  # sends begun (marked ``sending``) and not yet recorded
    _closed: bool  # ``finish_sends`` ran: no send starts any more

    def dispatch_due(self, notifier: str | None = None) -> int:
        """Deliver every due message (of one notifier, or of all), in order per (notifier, incident);
        returns how many were sent.

        Groups go in ``alerting.outbox_plan``'s order: every incident's first message alone, where its
        notifier threads the rest under it (``ThreadOpeningNotifier``), before the other messages; each
        part most urgent first, then oldest first. A message that goes before what is left, stored while
        this round delivers, is served next (the round is planned again), so a rate-limited backlog that
        takes minutes does not hold a new page for them."""
        failing: set[str] = set()
        opened: set[tuple[str, str]] = set()  # groups whose first message this round tried alone
        sent = 0
        with self._sessions() as session:
            self._read_pauses(session, [notifier] if notifier is not None else list(self._notifiers))
        openers = [n for n, d in self._notifiers.items() if isinstance(d, ThreadOpeningNotifier)]
        while True:
            with self._sessions() as session:
                groups, newest = plan(session, notifier, openers, opened)
            replan = opening = False
            for index, group in enumerate(groups):
                if self.hurry.is_set():  # a second stop signal: what is left stays pending for the next start
                    return sent
                if opening and not group.opens:
                    replan = True  # the openings done: their incidents' replies take their places in order
                    break
                if group.opens:  # tried once a round, sent or not (each planning again opens one less)
                    opening = True
                    opened.add((group.notifier, group.incident_id))
                destination = self._notifiers.get(group.notifier)
                if destination is None or group.notifier in failing or self.paused(group.notifier):
                    continue
                if group.opens:
                    outcome = 0, self._open_group(destination, group.incident_id)
                else:
                    outcome = self._drain_group(destination, group.incident_id)
                sent += outcome[0]
                if outcome[1]:
                    # This destination is failing now: leave its other incidents for the next round.
                    failing.add(group.notifier)
                upcoming = groups[index + 1] if index + 1 < len(groups) else None
                if upcoming is not None and self._overtaken(notifier, newest, upcoming, openers, opened):
                    replan = True
                    break
            replan = replan or opening  # the last ones opened: their replies still wait
            if not replan:
                return sent

    def _overtaken(
        self,
        notifier: str | None,
        newest: int,
        upcoming: Group,
        openers: list[str],
        opened: set[tuple[str, str]],
    ) -> bool:
        with self._sessions() as session:
            return overtaken(session, notifier, newest, upcoming, openers=openers, opened=opened)

    def paused(self, notifier: str) -> bool:
        """Whether ``notifier`` waits out a rate limit now (no call to it until its Retry-After passed), as
        this process or the store knows (one given to a serve before a restart, or to the active one)."""
        if self.blocking(notifier):  # refused every call at its last try: tried again later, not now
            return True
        if notifier not in self._paused_until:
            with self._sessions() as session:
                self._read_pauses(session, [notifier])
        return not pause_over(self._paused_until.get(notifier, 0.0), self._clock.time())

    def pause_left(self, notifier: str) -> float:
        """Seconds left of ``notifier``'s rate-limit pause, as the last dispatch round read it (0: none)."""
        until, now = self._paused_until.get(notifier, 0.0), self._clock.time()
        return 0.0 if pause_over(until, now) else until - now

    def pauses(self) -> dict[str, tuple[float, float]]:
        """The notifiers waiting out a rate limit now, as this process or the store knows, with when each
        pause ends and the seconds left: ``{name: (until, seconds_left)}`` (what ``outbox list`` shows: why
        their messages are not moving)."""
        with self._sessions() as session:
            self._read_pauses(session, list(self._notifiers))
        left = {name: self.pause_left(name) for name in self._notifiers}
        return {name: (self._paused_until[name], seconds) for name, seconds in left.items() if seconds > 0}

    def _read_pauses(self, session: Session, notifiers: Sequence[str]) -> None:
        now = self._clock.time()
        self._restart_stepped_pauses(session, now)
        stored = stored_pauses(session, notifiers, now)
        for name in notifiers:
            mine = self._paused_until.get(name, 0.0)
            self._paused_until[name] = max(stored.get(name, 0.0), 0.0 if pause_over(mine, now) else mine)

    def _restart_stepped_pauses(self, session: Session, now: float) -> None:
        """Count the pauses this process set (``_pauses_set``) from ``now`` where they were set after it: the
        wall clock went back since, and a 60 s Retry-After set back 30 minutes paused the notifier 31. Stored
        so (``restart_pause``), where a later pause (a far end's, or another serve's) did not replace it; in
        memory: a restart or a standby taking over waits it out as stored (an hour at most). One ending more
        than an hour ahead is over (``pause_over``), as before."""
        for name, (set_at, until) in list(self._pauses_set.items()):
            if pause_over(until, now):  # ended, or over as one ending more than an hour ahead
                del self._pauses_set[name]
                continue
            if set_at <= now:
                continue
            moved = now + (until - set_at)
            self._pauses_set[name] = (now, moved)
            if self._paused_until.get(name) == until:
                self._paused_until[name] = moved
            restart_pause(session, name, until, moved)

    def _due(self, message: OutboxMessage) -> bool:
        """Whether ``message`` is due: its ``next_attempt_at`` has come, or it lies further ahead than the
        wait the outbox sets for it (a wall clock set back since would hold it that much longer): for one
        tried, the backoff its attempts give (a 2 s backoff is not waited out 30 minutes because the clock
        went back 30; one refused by a rate limit waits for its notifier's pause, ``paused``, not for its
        own time); for one never tried, its notifier's hold (``held_at``: an edit is not held 35 minutes,
        and counted held, because the clock went back 30)."""
        now = self._clock.time()
        if never_tried(message):
            longest = self._holds.get(message.notifier, 0.0)
        else:
            longest = self._backoff.delay(message.attempts)
        return message.next_attempt_at <= now or message.next_attempt_at - now > longest

    def _oldest_waiting(self, notifier: str, incident_id: str, count: int) -> list[OutboxMessage]:
        """The ``count`` oldest waiting messages of ``notifier`` for the incident, oldest first."""
        with self._sessions() as session:
            return list(
                session.scalars(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.notifier == notifier,
                        OutboxMessage.incident_id == incident_id,
                        OutboxMessage.status.in_(WAITING),
                    )
                    .order_by(OutboxMessage.id)
                    .limit(count)
                )
            )

    def _drain_group(self, notifier: Notifier, incident_id: str) -> tuple[int, bool]:
        """Send one incident's due messages in order; stop at the first failure. (sent, retryable failure)."""
        sent = 0
        while not self._held(notifier.name, incident_id):
            # The next one too: a later message may make the head's edit needless.
            rows = self._oldest_waiting(notifier.name, incident_id, 2)
            if not rows:
                return sent, False
            head = rows[0]
            due = self._due(head)
            if not due and (head.attempts or len(rows) == 1):  # backing off, or an edit held alone
                return sent, False
            notification = Notification.model_validate_json(head.payload)  # stored once, never changed
            # An edit held for a later one (``_edit_due``) is set aside for it before it is due.
            if len(rows) > 1 and self._superseded(head, notification, rows[1], due=due):
                continue
            if (not due and not waited_on(notification, rows)) or self.hurry.is_set():
                return sent, False
            result = self._attempt(notifier, head.id, notification)
            if result is True:
                sent += 1
            elif result is False:
                return sent, not self._held(notifier.name, incident_id)
        return sent, False

    def _open_group(self, notifier: Notifier, incident_id: str) -> bool:
        """Post only the first message of the incident (its thread's top: ``ThreadOpeningNotifier``), where
        its oldest waiting message is due and no edit; the rest of that message goes with the incident's
        others (``_drain_group``). True: a retryable failure."""
        head = next(iter(self._oldest_waiting(notifier.name, incident_id, 1)), None)
        if head is None or not self._due(head) or self._held(notifier.name, incident_id):
            return False
        notification = Notification.model_validate_json(head.payload)
        if notification.edit_only or self.hurry.is_set():  # an edit may be set aside (``_superseded``)
            return False
        failed = self._attempt(notifier, head.id, notification, opening=True) is False
        return failed and not self._held(notifier.name, incident_id)

    def _superseded(
        self, head: OutboxMessage, edit: Notification, later: OutboxMessage, *, due: bool
    ) -> bool:
        """Set ``head`` (its notification: ``edit``) aside unsent (``discarded``, saying by which message)
        when it is an ``edit_only`` change waiting (not in flight) and message ``later`` of its incident waits
        after it: every message carries the whole incident as it is after its change, so the later one shows
        all the edit would, and what changes at every scrape costs one call per dispatch round, not one per
        scrape. Not when ``later`` is told under a silence and the edit was not (``stands_in``). Kept with
        its key, the same change told again (after a restart) is still a repeat. Only while this server holds
        the store lock (``_attempt`` says why not)."""
        if head.status != PENDING:
            return False
        if not edit.edit_only or not stands_in(Notification.model_validate_json(later.payload), edit):
            return False
        try:
            self.fence.require()
        except NotActive:
            return False
        why = f"superseded by message {later.id}, which shows its incident as it is later"
        with self._sessions() as session, session.begin():
            row = session.get_one(OutboxMessage, head.id)
            if row.status != PENDING:
                return False
            row.status, row.last_error = DISCARDED, why
            # It goes when the edit would have: one held (``_edit_due``) is not put off again by each edit,
            # and one due (``_due``: its hold over, by its time or by a clock set back) goes now.
            taker = session.get_one(OutboxMessage, later.id)
            until = self._clock.time() if due else row.next_attempt_at
            taker.next_attempt_at = min(taker.next_attempt_at, until)
        self.stats.count(self.stats.by_notifier_superseded, head.notifier)
        return True

    def finish_sends(self, seconds: float) -> bool:
        """At serve's stop: start no send any more, and wait ``seconds`` at most for the one in flight to be
        recorded (sent, or to retry). Cut there (serve's second stop signal ends it at once), a message stayed
        ``sending`` and the next start sent it again as after a crash: a webhook receiver got it twice, though
        it had answered 200 a moment later. False when one is still in flight: it stays ``sending``."""
        with self._sends:
            self._closed = True
            if self._in_flight and not self._sends.wait_for(lambda: self._in_flight == 0, timeout=seconds):
                logger.warning(
                    "outbox: a notification still being sent after %.0f s is left sending: the next start"
                    " sends it again, as a retry (Slack looks for it first; a webhook receiver drops it by"
                    " its Idempotency-Key)",
                    seconds,
                )
                return False
        return True

    def _attempt(
        self, notifier: Notifier, row_id: int, notification: Notification, *, opening: bool = False
    ) -> bool | None:
        """Send message ``row_id`` (its payload: ``notification``). True: sent. False: will be retried (or not
        sent: serve stops, ``finish_sends``). None: failed for good (the next message may go). Only while this
        server holds the store lock, asked before the message is marked ``sending``: one that lost it leaves
        the message as it was, for the server that holds it to send as it would have (not as a retry of a
        send that never happened)."""
        if not self._may_send(notifier.name, notification.incident_id):
            return False
        with self._sends:  # checked with the count held: no send begins once ``finish_sends`` waited
            if self._closed or self.hurry.is_set():
                return False
            self._in_flight += 1
        try:
            return self._send(notifier, row_id, notification, opening=opening)
        finally:
            with self._sends:
                self._in_flight -= 1
                self._sends.notify_all()

    def _send(
        self, notifier: Notifier, row_id: int, notification: Notification, *, opening: bool
    ) -> bool | None:
        """``_attempt``'s send, once it may: marked ``sending``, handed to the notifier, recorded. When
        ``opening`` (``_open_group``), only its first post: it is an attempt like any while it runs (a
        crash then leaves it ``sending``, retried as one that may have reached the far end, which finds
        the post), and once the post is saved the message waits as before it, its attempt not counted."""
        with self._sessions() as session, session.begin():
            row = session.get_one(OutboxMessage, row_id)
            retry = row.attempts > 0
            row.status, row.attempts = SENDING, row.attempts + 1
            # Due now, whatever it waited for: one sent before its hold ended (``waited_on``) and found
            # ``sending`` after a crash is retried at once, not at that time with what waits behind it.
            row.next_attempt_at = min(row.next_attempt_at, self._clock.time())
            attempts, incident_id = row.attempts, row.incident_id
            thread_row = session.get(NotificationThread, (notifier.name, incident_id))
            thread = (
                ThreadState(thread_row.channel, thread_row.ts, thread_row.chart_posted, thread_row.posted_for)
                if thread_row is not None
                else ThreadState()
            )

        def save(state: ThreadState) -> None:
            self._save_thread(notifier.name, incident_id, state)

        try:
            if opening and isinstance(notifier, ThreadOpeningNotifier):
                notifier.open_thread(notification, thread, retry=retry, save=save)
                delivered = None
            else:
                delivered = notifier.deliver(notification, thread, retry=retry, save=save)
        except BackendError as exc:
            if exc.until_fixed:
                return self._blocked(notifier.name, row_id, str(exc))
            if exc.retry_after is not None and exc.limit:
                return self._held_by_limit(notifier.name, row_id, exc.retry_after, str(exc))
            if exc.retry_after is not None:
                return self._rate_limited(notifier.name, row_id, exc.retry_after, str(exc))
            return self._failed(row_id, attempts, str(exc), retryable=exc.retryable)
        except Exception as exc:  # a notifier bug: log it, keep the message, try again later
            self.stats.error()
            logger.exception("notifier crashed notifier=%s incident_id=%s", notifier.name, incident_id)
            return self._failed(row_id, attempts, f"{type(exc).__name__}: {exc}", retryable=True)
        with self._sessions() as session, session.begin():
            row = session.get_one(OutboxMessage, row_id)
            if opening:  # the rest of it goes in its turn, as the attempt it was before this
                row.status, row.attempts = PENDING, row.attempts - 1
            else:
                row.status, row.sent_at, row.last_error = SENT, self._clock.time(), None
            if notifier.name in self._backing_off:
                self._backing_off.discard(notifier.name)
                session.execute(
                    update(OutboxMessage)
                    .where(
                        OutboxMessage.notifier == notifier.name,
                        OutboxMessage.status == PENDING,
                        OutboxMessage.attempts > 0,  # not an edit held on purpose (``_edit_due``)
                        OutboxMessage.next_attempt_at > self._clock.time(),
                    )
                    .values(next_attempt_at=self._clock.time())
                )
        self._unblocked(notifier.name, incident_id)
        if opening:
            return True
        held = delivered is False  # the notifier sent nothing for it (a silenced incident's change)
        self.stats.count(self.stats.by_notifier_held if held else self.stats.by_notifier_sent, notifier.name)
        return True

    def _may_send(self, notifier: str, incident_id: str) -> bool:
        """Whether this server still holds the store lock, verified just now or within the fence's bound."""
        try:
            self.fence.require()
        except NotActive as exc:
            logger.warning("outbox: not sending notifier=%s incident_id=%s: %s", notifier, incident_id, exc)
            return False
        return True

    def _save_thread(self, notifier: str, incident_id: str, state: ThreadState) -> None:
        with self._sessions() as session, session.begin():
            row = session.get(NotificationThread, (notifier, incident_id))
            if row is None:
                row = NotificationThread(notifier=notifier, incident_id=incident_id)
                session.add(row)
            row.channel, row.ts, row.chart_posted = state.channel, state.ts, state.chart_posted
            row.posted_for = state.posted_for
            row.updated_at = self._clock.time()

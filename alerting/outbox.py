"""A persistent notification outbox: a Slack outage delays messages, it never drops or duplicates them.

The ``Outbox`` is an ``IncidentListener``: for every committed incident change it stores one row per notifier,
keyed by an idempotency key per incident and event (the same change enqueued twice is stored once).
``dispatch_due`` delivers rows in order per (notifier, incident): a later message of an incident never
overtakes an earlier one, while other incidents and other notifiers go on. A retryable failure
(``BackendError.retryable``, or an unexpected exception) keeps the row with an exponential backoff driven by
the ``Clock`` and no attempt limit, until a delivery to that notifier succeeds again (then every message
backing off is due at once, still in order per incident); a rate limit (``BackendError.retry_after``) pauses
every call to that notifier until its Retry-After has passed, an hour at most (kept in the store,
``alerting.outbox_pauses``, so a restarted serve or a standby honours it too; a wait found to end further
ahead than the outbox ever sets is over: the wall clock went back since); a non-retryable one marks it
``failed`` (kept, see ``requeue_failed``). A notifier that chooses what it is sent (a ``SelectiveNotifier``: a
webhook's ``events`` and ``priorities``) gets no row for a change it does not want; once a row of an incident
was stored for it, it is asked with ``known=True``. A change told ``only_if_told`` (the end of an incident
never announced) is stored only for notifiers that have a row of its incident. An ``edit_only`` change
waiting when a later message of its incident waits too is set aside unsent (``_superseded``). Its metrics:
``alerting.outbox_metrics``.

Crash safety: a row is marked ``sending`` and committed before the notifier runs, and ``sent`` after.
A row found in ``sending`` (or one that failed before) is retried with ``retry=True``, which tells the
notifier that the far end may already have it. The Slack notifier then updates its stored message in place
(``chat.update`` on the saved ``ts``) and looks for the reply's idempotency key in the thread before posting,
so nothing is posted twice. What remains at-least-once: the chart upload (a crash between
``files_upload_v2`` and saving ``chart_posted`` uploads it again), the first post of an incident when the
configured channel is a name rather than an id, and the generic webhook (receivers dedupe by the
``Idempotency-Key`` header). One dispatcher per database is assumed, with one thread per notifier; two would
race for the same rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, Select, case, func, select, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from alerting.fencing import LockFence, NotActive, unfenced
from alerting.notifiers.base import (
    EditHoldingNotifier,
    Notification,
    Notifier,
    RunbookLinker,
    SelectiveNotifier,
    ThreadState,
    build_notification,
    idempotency_key,
)
from alerting.outbox_orphans import discard_messages
from alerting.outbox_pauses import MAX_PAUSE_SECONDS, keep_pause, pause_over, stored_pauses
from alerting.outbox_stats import OutboxStats
from alerting.outbox_tables import (
    DISCARDED,
    FAILED,
    HELD,
    PENDING,
    SENDING,
    SENT,
    WAITING,
    NotificationThread,
    OutboxMessage,
    first_taken,
    held_at,
    never_tried,
)
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import Clock
from gpuwarden.errors import BackendError

logger = logging.getLogger(__name__)

URGENCY_UNKNOWN = 4
"""Where a message stored without a priority (before revision 0013) comes: after P3."""


def _urgency(priority: str | None) -> int:
    """0 for P0 (the most urgent) to 3 for P3; ``URGENCY_UNKNOWN`` for none or one not known."""
    if priority is not None and len(priority) == 2 and priority[0] == "P" and priority[1] in "0123":
        return int(priority[1])
    return URGENCY_UNKNOWN


def _stands_in(later: Notification, edit: Notification) -> bool:
    """Whether ``later`` shows what ``edit`` would: not when a silence holds it and held nothing of the
    edit (a webhook posts nothing for a silenced incident; the receiver would keep the edit's old figures
    until the silence ends)."""
    return later.silenced_until is None or edit.silenced_until is not None


def _waited_on(edit: Notification, rows: Sequence[OutboxMessage]) -> bool:
    """Whether ``edit``, held for a later one (``Outbox._edit_due``) and not set aside for the message after
    it (``rows[1]``), goes now: that message is no edit, so it goes at once, and it waits behind the edit (a
    change told under a silence that came after the edit, a resolution behind it: not held 5 minutes)."""
    if not edit.edit_only or len(rows) < 2:
        return False
    return not Notification.model_validate_json(rows[1].payload).edit_only


def _hold_seconds(notifier: Notifier) -> float:
    """How long ``notifier`` holds an ``edit_only`` change for a later one; 0 but for an
    ``EditHoldingNotifier``."""
    return notifier.edit_interval_seconds if isinstance(notifier, EditHoldingNotifier) else 0.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between attempts of one message, capped; no attempt limit."""

    initial_seconds: float = 2.0
    factor: float = 2.0
    max_seconds: float = 300.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        return float(min(self.max_seconds, self.initial_seconds * self.factor ** max(0, attempts - 1)))


class Outbox:
    """Stores notifications on incident changes and delivers them with retries; an ``IncidentListener``."""

    def __init__(
        self,
        engine: Engine,
        notifiers: Sequence[Notifier],
        clock: Clock,
        *,
        backoff: Backoff | None = None,
        runbook: RunbookLinker | None = None,
    ) -> None:
        names = [n.name for n in notifiers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"notifier names must be unique: {', '.join(duplicates)}")
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._notifiers = {n.name: n for n in notifiers}
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._runbook = runbook
        # Notifier name → how long it holds an ``edit_only`` change (``_edit_due``): the longest hold it sets.
        self._holds = {n.name: _hold_seconds(n) for n in notifiers if _hold_seconds(n) > 0}
        self.stats = OutboxStats()
        # Notifier name → clock time before which it is not called: it was rate limited (Retry-After), and
        # the limit is the app's, not one incident's (Slack's is per method and app).
        self._paused_until: dict[str, float] = {}
        # Notifiers whose messages may be backing off after a transient failure (all of them at start): the
        # next delivery that succeeds makes those due at once, so a message does not wait minutes of
        # backoff grown during an outage once the destination is back.
        self._backing_off: set[str] = set(self._notifiers)
        self.fence: LockFence = unfenced()  # serve's: nothing is sent unless it still holds the store lock
        # Whether the store was unreachable at the last dispatch round of any notifier's loop (``run``).
        self._store_lock = threading.Lock()
        self._store_failing = False

    # --- enqueue -----------------------------------------------------------------------------------

    def __call__(self, change: IncidentChange) -> datetime | None:
        """Listener entry point: enqueue. What fails (the store dropped) is raised: the engine keeps the
        change stored and tells it again (``alerting.handoff``); the enqueue dedupes it, and says when it
        first took it (a process that crashed before storing its announcement: the page was then), also
        when a notifier configured since takes it only now."""
        asked = datetime.fromtimestamp(self._clock.time(), UTC)
        added = self.enqueue(change)
        if change.kind is not ChangeKind.OPENED or added == len(self._notifiers):
            return None
        with self._sessions() as session:  # by the (notifier, key) index: the notifiers configured now
            taken = first_taken(
                session,
                OutboxMessage.notifier.in_(list(self._notifiers)),
                OutboxMessage.idempotency_key == idempotency_key(change),
            ).get(change.incident.id)
        # The first stored by this call (the other notifiers filtered it out): taken now, as when all took it.
        if taken is None or (added and taken >= asked):
            return None
        return taken

    def _notification(self, change: IncidentChange) -> Notification:
        # Only a snapshot here: this runs on the engine's path, so nothing slow (a chart's series is read
        # by the notifier at delivery time).
        return build_notification(change, runbook=self._runbook)

    def enqueue(self, change: IncidentChange) -> int:
        """Store the change for every notifier; returns how many rows were new (0 for a repeat)."""
        key = idempotency_key(change)
        now = self._clock.time()
        added = 0
        built: tuple[Notification, str] | None = None  # the notification and its JSON, made once
        for name, notifier in self._notifiers.items():
            with self._sessions() as session:
                exists = session.scalar(
                    select(OutboxMessage.id).where(
                        OutboxMessage.notifier == name, OutboxMessage.idempotency_key == key
                    )
                )
                if exists is not None:
                    self.stats.duplicates += 1
                    continue
                if built is None:
                    notification = self._notification(change)
                    built = notification, notification.model_dump_json()
                notification, payload = built
                if isinstance(notifier, SelectiveNotifier) or change.only_if_told:
                    known = session.scalar(
                        select(OutboxMessage.id)
                        .where(
                            OutboxMessage.notifier == name, OutboxMessage.incident_id == change.incident.id
                        )
                        .limit(1)
                    )
                    if change.only_if_told and known is None:
                        continue  # the end of an incident never announced to it: nothing to close
                    if isinstance(notifier, SelectiveNotifier) and not notifier.wants(
                        notification, known=known is not None
                    ):
                        self.stats.count(self.stats.by_notifier_filtered, name)
                        continue
                session.add(
                    OutboxMessage(
                        notifier=name,
                        incident_id=change.incident.id,
                        idempotency_key=key,
                        payload=payload,
                        priority=change.incident.priority.value,
                        status=PENDING,
                        attempts=0,
                        created_at=now,
                        next_attempt_at=self._edit_due(session, notifier, change.incident.id, now)
                        if notification.edit_only
                        else now,
                    )
                )
                try:
                    session.commit()
                except IntegrityError:  # the same change enqueued concurrently: already stored
                    session.rollback()
                    self.stats.duplicates += 1
                    continue
                added += 1
        self.stats.enqueued += added
        return added

    @staticmethod
    def _edit_due(session: Session, notifier: Notifier, incident_id: str, now: float) -> float:
        """When an ``edit_only`` message is due: at once, but for an ``EditHoldingNotifier`` (a webhook, to
        which each is a POST) when the edit of the incident held for it already is due, else its interval
        from now. The next message supersedes a held one (``_drain_group``), so the latest edit goes at that
        time: at most one per interval however often they come (a recommendation flipping at every scrape).
        Held (``held_at``) means stored, pending, never tried, due later: in the store, so a restart holds it
        alike."""
        interval = _hold_seconds(notifier)
        if interval <= 0:
            return now
        held = session.scalar(
            select(func.min(OutboxMessage.next_attempt_at)).where(
                OutboxMessage.notifier == notifier.name,
                OutboxMessage.incident_id == incident_id,
                held_at(now, {notifier.name: interval}),
            )
        )
        return now + interval if held is None else float(held)

    # --- dispatch ----------------------------------------------------------------------------------

    def dispatch_due(self, notifier: str | None = None) -> int:
        """Deliver every due message (of one notifier, or of all), in order per (notifier, incident);
        returns how many were sent.

        Incidents are served most urgent first (the most urgent priority among their waiting messages),
        then oldest first: after an outage, a new P0's page goes before a backlog of P3 updates. A message
        more urgent than what is left, stored while this round delivers, is served next (the round is
        planned again), so a rate-limited backlog that takes minutes does not hold a new page for them."""
        failing: set[str] = set()
        sent = 0
        with self._sessions() as session:
            self._read_pauses(session, [notifier] if notifier is not None else list(self._notifiers))
        while True:
            groups, newest = self._plan(notifier)
            replan = False
            for index, (notifier_name, incident_id, _) in enumerate(groups):
                destination = self._notifiers.get(notifier_name)
                if destination is None or notifier_name in failing or self.paused(notifier_name):
                    continue
                outcome = self._drain_group(destination, incident_id)
                sent += outcome[0]
                if outcome[1]:
                    # This destination is failing now: leave its other incidents for the next round.
                    failing.add(notifier_name)
                if index + 1 < len(groups) and self._overtaken(notifier, newest, groups[index + 1]):
                    replan = True
                    break
            if not replan:
                return sent

    def _waiting(self, notifier: str | None) -> Select[str, str, str | None, int]:
        query = select(
            OutboxMessage.notifier, OutboxMessage.incident_id, OutboxMessage.priority, OutboxMessage.id
        ).where(OutboxMessage.status.in_(WAITING))
        if notifier is not None:
            query = query.where(OutboxMessage.notifier == notifier)
        return query

    def _plan(self, notifier: str | None) -> tuple[list[tuple[str, str, int]], int]:
        """The (notifier, incident, urgency) groups with waiting messages, most urgent then oldest first,
        and the newest waiting message's id."""
        with self._sessions() as session:
            rows = session.execute(self._waiting(notifier).order_by(OutboxMessage.id)).all()
        urgency: dict[tuple[str, str], int] = {}
        for row in rows:  # dicts keep the first (oldest) message's place among equals
            key = (row.notifier, row.incident_id)
            urgency[key] = min(urgency.get(key, URGENCY_UNKNOWN), _urgency(row.priority))
        order = sorted(urgency, key=lambda key: urgency[key])  # stable: oldest first among equals
        return [(*key, urgency[key]) for key in order], (rows[-1].id if rows else 0)

    def _overtaken(self, notifier: str | None, newest: int, upcoming: tuple[str, str, int]) -> bool:
        """Whether a message stored since the plan (id past ``newest``) is more urgent than ``upcoming``."""
        with self._sessions() as session:
            later = session.execute(self._waiting(notifier).where(OutboxMessage.id > newest)).all()
        return any(_urgency(row.priority) < upcoming[2] for row in later)

    def paused(self, notifier: str) -> bool:
        """Whether ``notifier`` waits out a rate limit now (no call to it until its Retry-After passed), as
        this process or the store knows (one given to a serve before a restart, or to the active one)."""
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
        stored = stored_pauses(session, notifiers, now)
        for name in notifiers:
            mine = self._paused_until.get(name, 0.0)
            self._paused_until[name] = max(stored.get(name, 0.0), 0.0 if pause_over(mine, now) else mine)

    def _due(self, message: OutboxMessage) -> bool:
        """Whether ``message`` is due: its ``next_attempt_at`` has come, or it lies further ahead than any
        wait the outbox sets for it (a wall clock set back since would hold it that much longer): a backoff or
        a pause, or for one never tried its notifier's hold (``held_at``: an edit is not held 35 minutes,
        and counted held, because the clock went back 30)."""
        now = self._clock.time()
        longest = max(MAX_PAUSE_SECONDS, self._backoff.max_seconds)
        if never_tried(message):
            longest = self._holds.get(message.notifier, 0.0)
        return message.next_attempt_at <= now or message.next_attempt_at - now > longest

    def _drain_group(self, notifier: Notifier, incident_id: str) -> tuple[int, bool]:
        """Send one incident's due messages in order; stop at the first failure. (sent, retryable failure)."""
        sent = 0
        while True:
            with self._sessions() as session:
                rows = session.scalars(
                    select(OutboxMessage)
                    .where(
                        OutboxMessage.notifier == notifier.name,
                        OutboxMessage.incident_id == incident_id,
                        OutboxMessage.status.in_(WAITING),
                    )
                    .order_by(OutboxMessage.id)
                    .limit(2)  # the next one too: a later message may make the head's edit needless
                ).all()
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
            if not due and not _waited_on(notification, rows):
                return sent, False
            result = self._attempt(notifier, head.id, notification)
            if result is True:
                sent += 1
            elif result is False:
                return sent, True

    def _superseded(
        self, head: OutboxMessage, edit: Notification, later: OutboxMessage, *, due: bool
    ) -> bool:
        """Set ``head`` (its notification: ``edit``) aside unsent (``discarded``, saying by which message)
        when it is an ``edit_only`` change waiting (not in flight) and message ``later`` of its incident waits
        after it: every message carries the whole incident as it is after its change, so the later one shows
        all the edit would, and what changes at every scrape costs one call per dispatch round, not one per
        scrape. Not when ``later`` is told under a silence and the edit was not (``_stands_in``). Kept with
        its key, the same change told again (after a restart) is still a repeat. Only while this server holds
        the store lock (``_attempt`` says why not)."""
        if head.status != PENDING:
            return False
        if not edit.edit_only or not _stands_in(Notification.model_validate_json(later.payload), edit):
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

    def _attempt(self, notifier: Notifier, row_id: int, notification: Notification) -> bool | None:
        """Send message ``row_id`` (its payload: ``notification``). True: sent. False: will be retried. None:
        failed for good (the next message may go). Only while this server holds the store lock, asked before
        the message is marked ``sending``: one that lost it leaves the message as it was, for the server
        that holds it to send as it would have (not as a retry of a send that never happened)."""
        if not self._may_send(notifier.name, notification.incident_id):
            return False
        with self._sessions() as session, session.begin():
            row = session.get_one(OutboxMessage, row_id)
            retry = row.attempts > 0
            row.status, row.attempts = SENDING, row.attempts + 1
            # Due now, whatever it waited for: one sent before its hold ended (``_waited_on``) and found
            # ``sending`` after a crash is retried at once, not at that time with what waits behind it.
            row.next_attempt_at = min(row.next_attempt_at, self._clock.time())
            attempts, incident_id = row.attempts, row.incident_id
            thread_row = session.get(NotificationThread, (notifier.name, incident_id))
            thread = (
                ThreadState(thread_row.channel, thread_row.ts, thread_row.chart_posted)
                if thread_row is not None
                else ThreadState()
            )

        def save(state: ThreadState) -> None:
            self._save_thread(notifier.name, incident_id, state)

        try:
            delivered = notifier.deliver(notification, thread, retry=retry, save=save)
        except BackendError as exc:
            if exc.retry_after is not None:
                return self._rate_limited(notifier.name, row_id, exc.retry_after, str(exc))
            return self._failed(row_id, attempts, str(exc), retryable=exc.retryable)
        except Exception as exc:  # a notifier bug: log it, keep the message, try again later
            self.stats.error()
            logger.exception("notifier crashed notifier=%s incident_id=%s", notifier.name, incident_id)
            return self._failed(row_id, attempts, f"{type(exc).__name__}: {exc}", retryable=True)
        with self._sessions() as session, session.begin():
            row = session.get_one(OutboxMessage, row_id)
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
        until = self._clock.time() + wait
        with self._sessions() as session, session.begin():
            # Stored with the refused message: a restarted serve or a standby honours it too.
            self._paused_until[notifier] = keep_pause(session, notifier, until, error)
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

    def _save_thread(self, notifier: str, incident_id: str, state: ThreadState) -> None:
        with self._sessions() as session, session.begin():
            row = session.get(NotificationThread, (notifier, incident_id))
            if row is None:
                row = NotificationThread(notifier=notifier, incident_id=incident_id)
                session.add(row)
            row.channel, row.ts, row.chart_posted = state.channel, state.ts, state.chart_posted
            row.updated_at = self._clock.time()

    # --- inspection and operation ------------------------------------------------------------------

    def messages(
        self, status: str | None = None, incident_id: str | None = None, limit: int | None = None
    ) -> list[OutboxMessage]:
        """Stored messages in enqueue order, optionally of one status or incident; with ``limit``, the
        newest that many."""
        with self._sessions() as session:
            query = select(OutboxMessage)
            if status is not None:
                query = query.where(OutboxMessage.status == status)
            if incident_id is not None:
                query = query.where(OutboxMessage.incident_id == incident_id)
            if limit is not None:
                newest = query.order_by(OutboxMessage.id.desc()).limit(limit)
                return sorted(session.scalars(newest), key=lambda m: m.id)
            return list(session.scalars(query.order_by(OutboxMessage.id)))

    def thread(self, notifier: str, incident_id: str) -> ThreadState | None:
        """The stored conversation of an incident for a notifier."""
        with self._sessions() as session:
            row = session.get(NotificationThread, (notifier, incident_id))
            return None if row is None else ThreadState(row.channel, row.ts, row.chart_posted)

    @property
    def notifier_names(self) -> list[str]:
        """The names of its notifiers, in the order given."""
        return list(self._notifiers)

    def counts_by_notifier(self) -> dict[tuple[str, str], int]:
        """How many stored messages each notifier has in each status: ``{(notifier, status): n}``, a pending
        message held on purpose now (``held_at``) counted as ``held``, not ``pending``."""
        status = case((held_at(self._clock.time(), self._holds), HELD), else_=OutboxMessage.status)
        query = select(OutboxMessage.notifier, status, func.count()).group_by(OutboxMessage.notifier, status)
        with self._sessions() as session:
            rows = session.execute(query).all()
        return {(str(notifier), str(status)): int(count) for notifier, status, count in rows}

    def counts(self, incident_id: str | None = None) -> dict[str, int]:
        """How many stored messages (of one incident, or all) are in each status."""
        return self.depths(incident_id)[0]

    def depths(self, incident_id: str | None = None) -> tuple[dict[str, int], int]:
        """``counts`` and how many of the pending are held on purpose now (``held_at``), in one read: a
        message stored between two reads would be counted held and not pending."""
        held = func.sum(case((held_at(self._clock.time(), self._holds), 1), else_=0))
        query = select(OutboxMessage.status, func.count(), held).group_by(OutboxMessage.status)
        if incident_id is not None:
            query = query.where(OutboxMessage.incident_id == incident_id)
        with self._sessions() as session:
            rows = session.execute(query).all()
        return {str(status): int(count) for status, count, _ in rows}, sum(int(n or 0) for _, _, n in rows)

    def requeue_failed(self, incident_id: str | None = None) -> tuple[int, int]:
        """Put failed messages (of one incident, or all) back in the queue, after fixing a token or a
        channel; they go out in their incident's order, with what was queued after them. A failed message
        that a later one of its incident has overtaken (sent) stays failed: sent now, it would set the
        incident's message back to what it said then. Failed messages of a notifier no longer configured stay
        failed: queued, nothing would send them. Returns (queued again, left as overtaken)."""
        with self._sessions() as session, session.begin():
            query = select(OutboxMessage).where(
                OutboxMessage.status == FAILED, OutboxMessage.notifier.in_(list(self._notifiers))
            )
            if incident_id is not None:
                query = query.where(OutboxMessage.incident_id == incident_id)
            rows = list(session.scalars(query))
            last_sent = {
                (notifier, incident): newest
                for notifier, incident, newest in session.execute(
                    select(OutboxMessage.notifier, OutboxMessage.incident_id, func.max(OutboxMessage.id))
                    .where(OutboxMessage.status == SENT)
                    .group_by(OutboxMessage.notifier, OutboxMessage.incident_id)
                )
            }
            queued = [r for r in rows if last_sent.get((r.notifier, r.incident_id), -1) < r.id]
            for row in queued:
                row.status, row.next_attempt_at = PENDING, self._clock.time()
        if rows:
            logger.info(
                "outbox: %d failed messages queued again, %d left (overtaken)",
                len(queued),
                len(rows) - len(queued),
            )
        return len(queued), len(rows) - len(queued)

    def discard(
        self,
        notifier: str,
        statuses: Collection[str],
        *,
        by: str,
        incident_id: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, int]:
        """Drop orphaned (or, asked, failed) messages of ``notifier`` for good, as ``by``; of one incident or
        all; with ``dry_run`` only count them (see ``discard_messages``)."""
        now = self._clock.time()
        return discard_messages(
            self._sessions, notifier, statuses, by=by, now=now, incident_id=incident_id, dry_run=dry_run
        )

    def run(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        """Dispatch until ``stop`` is set, each notifier on its own thread: a destination that is slow or
        hangs (a webhook's POST waiting out its timeout) never delays another's messages. One thread owns
        each notifier's rows, so its order per incident and its once-only delivery hold as with one."""
        workers = [
            threading.Thread(
                target=self._run_notifier, args=(name, stop, poll_seconds), name=f"outbox {name}", daemon=True
            )
            for name in self._notifiers
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _run_notifier(self, name: str, stop: threading.Event, poll_seconds: float) -> None:
        """One notifier's dispatch loop; its boundary logs and counts unexpected errors.

        A store that cannot be reached is no outbox error (``/-/ready`` and ``gpuwarden_store_up`` report
        it): its first failure is logged once with the traceback (by whichever notifier's loop met it), then
        one line per round until it is back."""
        while not stop.is_set():
            try:
                self.dispatch_due(name)
            except SQLAlchemyError as exc:
                with self._store_lock:
                    first, self._store_failing = not self._store_failing, True
                if first:
                    logger.exception(
                        "outbox dispatch round failed: the store is unreachable notifier=%s", name
                    )
                else:
                    logger.warning("outbox dispatch round failed again notifier=%s: %r", name, exc)
            except Exception:
                self.stats.error()
                logger.exception("outbox dispatch round failed notifier=%s", name)
            else:
                with self._store_lock:
                    back, self._store_failing = self._store_failing, False
                if back:
                    logger.info("outbox dispatching again")
            self._clock.sleep(poll_seconds)
